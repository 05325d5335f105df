"""The joint image + mask space and the ResUNet that denoises it.

:class:`JointSpace` turns an image and its mask into the one tensor SimGen diffuses — the image's
3 channels next to the mask's 3 colour channels (:mod:`saadi_simgen.colour_coding`), at the
model's resolution, pixel-unshuffled by ``factor`` — and a denoised tensor back into an image,
a label map and each mask pixel's cosine similarity to its class colour. Pixel-unshuffle is a
lossless re-arrangement (``6 x H x W -> 6f² x H/f x W/f``): image and mask values are diffused
as they are, only the network's grid is coarser, which is what makes a 64 px joint model
trainable on a CPU in minutes (``f = 1`` is the paper's plain pixel space).

:func:`build_unet` is a diffusers ``UNet2DModel`` (ResNet blocks with skip connections; the
SimGen paper's "ResUNet") with ``6f²`` input and output channels, no attention except, when
asked, in the mid block, and — for class-presence conditioning — a label embedding added to the
time embedding (``num_class_embeds``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from saadi_core.diffusion.builders import resize_images, resize_masks
from saadi_core.errors import ConfigError
from saadi_simgen.colour_coding import decode_mask, encode_mask, palette
from saadi_simgen.options import SimGenOptions

#: image channels + colour-coded mask channels
JOINT_CHANNELS = 6


class JointSpace:
    """Image ‖ colour-coded mask at ``resolution``, pixel-unshuffled by ``factor``."""

    def __init__(self, num_classes: int, resolution: int, factor: int) -> None:
        if resolution % factor:
            raise ConfigError(
                f"simgen: resolution {resolution} is not a multiple of unshuffle_factor {factor}"
            )
        self.num_classes, self.resolution, self.factor = num_classes, resolution, factor
        self.colours = palette(num_classes)

    @property
    def channels(self) -> int:
        return JOINT_CHANNELS * self.factor**2

    @property
    def shape(self) -> tuple[int, int, int]:
        size = self.resolution // self.factor
        return (self.channels, size, size)

    def encode(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in ``[-1, 1]`` and masks ``(N, H, W)`` -> the network's ``x0``."""
        images = resize_images(images.float(), self.resolution)
        masks = resize_masks(masks.long(), self.resolution)
        joint = torch.cat([images, encode_mask(masks, self.colours.to(images.device))], dim=1)
        return F.pixel_unshuffle(joint, self.factor)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network's tensor -> images ``(N, 3, R, R)`` clamped to ``[-1, 1]``, class ids
        ``(N, R, R)`` and each mask pixel's cosine similarity to its class colour."""
        joint = F.pixel_shuffle(x.float(), self.factor)
        labels, similarity = decode_mask(joint[:, 3:], self.colours)
        return joint[:, :3].clamp(-1.0, 1.0), labels, similarity


def check_resolution(resolution: int, factor: int, levels: int) -> None:
    multiple = factor * 2 ** (levels - 1)
    if resolution % multiple:
        raise ConfigError(
            f"simgen option 'resolution' ({resolution}) must be a multiple of {multiple} "
            f"(unshuffle_factor {factor} x UNet downsampling {2 ** (levels - 1)})"
        )


def build_unet(options: SimGenOptions, space: JointSpace, num_labels: int | None) -> Any:
    """A random-initialised ``UNet2DModel`` for ``space`` (seeded by ``options.seed`` without
    touching the global RNG); ``num_labels`` rows of label embedding, or none (unconditional)."""
    from diffusers import UNet2DModel

    levels = len(options.block_out_channels)
    check_resolution(space.resolution, space.factor, levels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        return UNet2DModel(
            sample_size=space.shape[1],
            in_channels=space.channels,
            out_channels=space.channels,
            block_out_channels=tuple(options.block_out_channels),
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            layers_per_block=options.layers_per_block,
            add_attention=options.mid_attention,
            attention_head_dim=options.attention_head_dim,
            norm_num_groups=options.norm_num_groups,
            act_fn=options.act_fn,
            num_class_embeds=num_labels,
        )


def check_unet(unet: Any, space: JointSpace, num_labels: int | None, where: str) -> None:
    """A loaded network must fit the joint space and the conditioning (clear error otherwise)."""
    have = (int(unet.config.in_channels), int(unet.config.out_channels))
    if have != (space.channels, space.channels):
        raise ConfigError(
            f"simgen: {where} has a UNet with {have[0]} input / {have[1]} output channels, but image + mask with "
            f"unshuffle_factor {space.factor} need {space.channels} / {space.channels}"
        )
    labels = unet.config.num_class_embeds
    if labels != num_labels:
        wanted = (
            "no label embedding (conditioning 'none')"
            if num_labels is None
            else f"{num_labels} label embeddings"
        )
        raise ConfigError(
            f"simgen: {where} has a UNet with num_class_embeds={labels}, but this dataset needs {wanted}"
        )
    check_resolution(space.resolution, space.factor, len(unet.config.block_out_channels))


def lora_targets(unet: torch.nn.Module) -> list[str]:
    """LoRA target names the network has: the mid-block attention projections when present, and
    the ResNet convolutions (conv1/conv2), which carry most of a convolutional UNet's weights."""
    names = {name.rsplit(".", 1)[-1] for name, _ in unet.named_modules()}
    attention = [n for n in ("to_q", "to_k", "to_v") if n in names]
    if attention:
        attention.append("to_out.0")
    return [*attention, "conv1", "conv2"]
