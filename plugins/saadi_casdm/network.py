"""CASDM's denoiser: a UNet whose encoder sees only the noisy image and whose decoder sees the mask.

The dual pathway of the paper (Fig. 2, after SDM): the *encoder* (diffusers ``ResnetBlock2D`` and
``Downsample2D``) processes the noisy image ``x_t`` with the timestep alone, the *decoder* is built
of :class:`~saadi_casdm.spade.SPADEResBlock` whose normalisations are modulated by the
segmentation map, with U-Net skip connections between them. A mask-free encoder is what the
class-aware self-perceptual loss needs: :meth:`SemanticUNet.encoder_features` gives the features
``Φ`` of any image without the mask, so "the network's own encoder" can compare a prediction with
the truth (see :mod:`saadi_casdm.losses`).

Input and output may be pixel-unshuffled (``(3·f², H/f, W/f)``, option ``unshuffle_factor``); the
mask always comes at full resolution ``H × W`` and is space-to-depth encoded per level, so a
coarser grid loses none of the layout.

The network is a diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``
round-trip it, and peft's LoRA finds ``conv1``/``conv2`` (every ResNet block, encoder and decoder)
and ``to_q``/``to_k``/``to_v``/``to_out.0`` (the bottleneck self-attention) — the names the
Diffusion-DPO aligner targets on diffusers UNets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from torch import nn

from saadi_casdm.spade import (
    MaskEncoder,
    SPADEResBlock,
    mask_input_channels,
    mask_pyramid_input,
    one_hot_masks,
)


class SemanticUNet(ModelMixin, ConfigMixin):
    """Mask-conditioned denoiser ``f(x_t, t, mask)``.

    ``block_out_channels[i]`` is the width of level ``i`` (level 0 = input size, each further level
    halves it); ``layers_per_block`` ResNet blocks per level on each side; ``attention`` adds a
    self-attention layer at the bottleneck; ``mask_factor`` is how many mask pixels one input
    position covers per side (the pixel-unshuffle factor); ``mask_detail`` caps the space-to-depth
    factor of the mask per level (see :func:`~saadi_casdm.spade.mask_pyramid_input`).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_classes: int = 2,
        block_out_channels: Sequence[int] = (32, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 32,
        mask_hidden_channels: int = 32,
        mask_factor: int = 1,
        mask_detail: int = 4,
        attention: bool = True,
        attention_head_dim: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = list(block_out_channels)
        temb = 4 * channels[0]
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)

        # ---- encoder: the noisy image only
        self.down_resnets = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            blocks = []
            for _ in range(layers_per_block):
                blocks.append(
                    ResnetBlock2D(
                        in_channels=previous,
                        out_channels=width,
                        temb_channels=temb,
                        groups=norm_num_groups,
                        dropout=dropout,
                    )
                )
                previous = width
            self.down_resnets.append(nn.ModuleList(blocks))
            self.downsamplers.append(
                Downsample2D(width, use_conv=True, name="op")
                if level < len(channels) - 1
                else nn.Identity()
            )

        # ---- bottleneck: encoder ResNet (mask-free), self-attention, decoder (SPADE) ResNet
        bottom = channels[-1]
        self.mid_resnet = ResnetBlock2D(
            in_channels=bottom, out_channels=bottom, temb_channels=temb, groups=norm_num_groups
        )
        self.mid_attention = (
            Attention(
                bottom,
                heads=max(1, bottom // attention_head_dim),
                dim_head=attention_head_dim,
                norm_num_groups=norm_num_groups,
                residual_connection=True,
                bias=True,
                eps=1e-6,
                _from_deprecated_attn_block=True,
            )
            if attention
            else None
        )
        levels = len(channels)
        self.mask_encoders = nn.ModuleList(
            MaskEncoder(
                mask_input_channels(num_classes, mask_factor * 2**level, mask_detail),
                mask_hidden_channels,
            )
            for level in range(levels)
        )
        self.mid_spade = SPADEResBlock(
            bottom, bottom, temb, mask_hidden_channels, norm_num_groups, dropout
        )

        # ---- decoder: SPADE blocks, the first of each level takes the skip connection
        self.up_resnets = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        previous = bottom
        for level in reversed(range(levels)):
            width = channels[level]
            blocks = []
            for j in range(layers_per_block):
                incoming = previous + width if j == 0 else width
                blocks.append(
                    SPADEResBlock(
                        incoming, width, temb, mask_hidden_channels, norm_num_groups, dropout
                    )
                )
                previous = width
            self.up_resnets.append(nn.ModuleList(blocks))
            self.upsamplers.append(Upsample2D(width, use_conv=True) if level > 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=1e-6)
        self.conv_out = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    # ------------------------------------------------------------------ pieces

    def _time(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        t = timestep.expand(sample.shape[0]) if timestep.dim() == 0 else timestep
        return self.time_embedding(self.time_proj(t).to(sample.dtype))

    def _encode(self, sample: torch.Tensor, temb: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features: each level's output (before downsampling), then the bottleneck
        ResNet's output (the last entry)."""
        h = self.conv_in(sample)
        features = []
        for blocks, down in zip(self.down_resnets, self.downsamplers):
            for block in blocks:
                h = block(h, temb)
            features.append(h)
            h = down(h)
        features.append(self.mid_resnet(h, temb))
        return features

    def encoder_features(self, sample: torch.Tensor, timestep: torch.Tensor) -> list[torch.Tensor]:
        """``Φ(x_t)``: the mask-free encoder features of ``sample`` at ``timestep`` (one per level
        plus the bottleneck), as the self-perceptual loss compares them."""
        return self._encode(sample, self._time(sample, timestep))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The prediction for ``sample`` ``(N, C, h, w)`` at integer ``timestep`` (``(N,)`` or a
        scalar) under class-id masks ``labels`` ``(N, h·f, w·f)``."""
        temb = self._time(sample, timestep)
        features = self._encode(sample, temb)
        one_hot = one_hot_masks(labels, self.config.num_classes).to(sample.dtype)
        size = int(sample.shape[-1])
        mask_features = [
            encoder(mask_pyramid_input(one_hot, size >> level, self.config.mask_detail))
            for level, encoder in enumerate(self.mask_encoders)
        ]
        h = features[-1]
        if self.mid_attention is not None:
            h = self.mid_attention(h)
        h = self.mid_spade(h, temb, mask_features[-1])
        levels = len(self.up_resnets)
        for i, (blocks, up) in enumerate(zip(self.up_resnets, self.upsamplers)):
            level = levels - 1 - i
            for j, block in enumerate(blocks):
                if j == 0:
                    h = torch.cat([h, features[level]], dim=1)
                h = block(h, temb, mask_features[level])
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))
