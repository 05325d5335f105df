"""What the ControlNet sees of a simulator frame (option ``control_input``).

* ``frame`` — the simulator frame itself;
* ``edges`` — a soft edge map of the frame (white edges on black, like the HED/PiDiNet maps
  SimuScope's soft-edge ControlNet was trained on). No edge-detector weights are available
  offline, so it is the Sobel gradient magnitude of the lightly blurred grey frame (the blur makes
  the lines soft), normalised by its own maximum;
* ``labels`` — the label map in a fixed colour code (the simulator's material colours without
  shading, :func:`saadi_simuscope.simulator.palette`), like the colour-coded maps of
  segmentation ControlNets.

Control images are ``float32 (N, 3, H, W)`` in ``[0, 1]``, the range diffusers' ControlNet
pipelines feed, so a pretrained ControlNet loaded in the ``paper`` profile sees what it was
trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saadi_simuscope.simulator import palette

CONTROL_INPUTS = ("frame", "edges", "labels")

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_BLUR = torch.tensor([1.0, 2.0, 1.0])


def soft_edges(frames: torch.Tensor) -> torch.Tensor:
    """Soft edge maps ``(N, 3, H, W)`` in ``[0, 1]`` of frames ``(N, 3, H, W)`` in ``[-1, 1]``."""
    grey = frames.float().mean(dim=1, keepdim=True)
    blur = (_BLUR[:, None] * _BLUR[None, :] / 16.0).to(grey)
    grey = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), blur[None, None])
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    sobel = _SOBEL.to(grey)
    gx = F.conv2d(padded, sobel[None, None])
    gy = F.conv2d(padded, sobel.T.contiguous()[None, None])
    magnitude = (gx.square() + gy.square()).sqrt()
    peak = magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (magnitude / peak).expand(-1, 3, -1, -1).contiguous()


def label_colours(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Colour-coded label maps ``(N, 3, H, W)`` in ``[0, 1]`` of class ids ``(N, H, W)``."""
    colours = torch.from_numpy(palette(num_classes) / 255.0).to(
        device=labels.device, dtype=torch.float32
    )
    return colours[labels.long()].permute(0, 3, 1, 2).contiguous()


def control_image(
    kind: str, frames: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The ControlNet input for simulator ``frames`` (``(N, 3, H, W)`` in ``[-1, 1]``) and their
    ``labels`` (``(N, H, W)``, same size)."""
    if kind == "frame":
        return frames.float().add(1.0).div(2.0).clamp(0.0, 1.0)
    if kind == "edges":
        return soft_edges(frames)
    if kind == "labels":
        return label_colours(labels, num_classes)
    raise ValueError(f"unknown control_input '{kind}' (choose from {', '.join(CONTROL_INPUTS)})")
