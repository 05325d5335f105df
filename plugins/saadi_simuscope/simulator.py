"""The toy "simulator": flat-shaded, untextured renderings of label masks.

SimuScope turns frames of a surgical simulator — whose labels are exact because the simulator
knows every object it draws — into realistic frames. The embedded default has no simulator, so
this module plays one: it renders a label mask the way an untextured game-engine scene looks.

* **One material per class.** Every class gets one flat colour (:func:`palette`). For toy-seg's
  five classes these are deliberately *not* the real colours: the default materials of a
  simulator (pink tissue, teal gallbladder, yellow duct, magenta artery, blue-steel tool) differ in
  hue from the real organs, so a raw simulator frame fails the toy-seg oracle and the generator
  has a real domain gap to bridge. Further classes get evenly spaced hues.
* **Simple shading, no texture, no noise.** Brightness falls off from the image centre (the
  endoscope's light) and towards each region's border (a cheap stand-in for curved surfaces).
  Shading only scales brightness, so every pixel's hue still names its class and the label is
  exact; nothing random is drawn, so a mask always renders to the same frame.

Everything is NumPy on ``int64 (N, H, W)`` masks and ``uint8 (N, H, W, 3)`` frames, like the
embedded datasets.
"""

from __future__ import annotations

import colorsys

import numpy as np
from scipy import ndimage

#: simulator materials of toy-seg's classes (background, gallbladder, cystic duct, cystic artery, tool)
TOY_MATERIALS = np.array(
    [[225, 150, 175], [60, 170, 150], [245, 235, 110], [225, 50, 120], [100, 125, 210]],
    dtype=np.float32,
)

#: darkening at the image corners (light fall-off) and at region borders (rim shading)
LIGHT_FALLOFF = 0.3
RIM_DARKENING = 0.2
#: width of the rim shading as a share of the image side
RIM_WIDTH = 0.06


def palette(num_classes: int) -> np.ndarray:
    """``float32 (K, 3)`` material colours in ``[0, 255]``: toy-seg's materials for the first
    five class ids, then evenly spaced saturated hues."""
    extra = num_classes - len(TOY_MATERIALS)
    if extra <= 0:
        return TOY_MATERIALS[:num_classes].copy()
    hues = [colorsys.hsv_to_rgb((k + 0.5) / extra, 0.65, 0.9) for k in range(extra)]
    return np.concatenate([TOY_MATERIALS, np.asarray(hues, dtype=np.float32) * 255.0])


def _light(size: tuple[int, int]) -> np.ndarray:
    """Radial fall-off ``(H, W)``: 1 at the centre, ``1 - LIGHT_FALLOFF`` in the corners."""
    h, w = size
    yy, xx = np.meshgrid(
        (np.arange(h) + 0.5) / h - 0.5, (np.arange(w) + 0.5) / w - 0.5, indexing="ij"
    )
    return (1.0 - LIGHT_FALLOFF * (yy**2 + xx**2) / 0.5).astype(np.float32)


def _rim(mask: np.ndarray) -> np.ndarray:
    """Per-pixel shading ``(H, W)``: ``1 - RIM_DARKENING`` on a region's border, 1 deep inside."""
    width = max(RIM_WIDTH * max(mask.shape), 1.0)
    depth = np.zeros(mask.shape, dtype=np.float32)
    for k in np.unique(mask):
        region = mask == k
        depth[region] = ndimage.distance_transform_edt(region)[region]
    return 1.0 - RIM_DARKENING * (1.0 - np.clip(depth / width, 0.0, 1.0))


def render(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Simulator frames ``uint8 (N, H, W, 3)`` for label masks ``int64 (N, H, W)``."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"render expects masks (N, H, W), got shape {masks.shape}")
    colours = palette(num_classes)
    light = _light(masks.shape[1:])
    frames = np.empty((*masks.shape, 3), dtype=np.uint8)
    for i, mask in enumerate(masks):
        shade = light * _rim(mask)
        frames[i] = np.clip(np.rint(colours[mask] * shade[..., None]), 0, 255).astype(np.uint8)
    return frames
