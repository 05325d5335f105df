"""Does each region of a segmentation sample *look* like its class? A judge learnt from real images.

Why: a segmenter scores a generated image by its Dice against the mask, and a segmenter finds a
region by its shape and place — a region painted with another class's colour and texture still
segments as its class. On toy-seg version 3 that made the segformer's pass/fail agree with the
oracle at Cohen's κ 0.15–0.17 for ``ssi`` and not at all for ``casdm``, whose samples of one mask
it could not tell apart (docs/benchmarks.md, "A selector that judges looks").

The judge is a small CNN that tells a region's class from a ``window`` × ``window`` crop centred
on one of the region's pixels, holding the region's pixels only (0 elsewhere) and the map of
which pixels those are. A window shows colour and coarse structure and little of the region's
outline, so the judge has to learn the look. It is trained on the real training images and
masks only. A sample's look score is, over its regions of at least :data:`MIN_PIXELS` pixels,
the smallest mean probability the judge gives the region's own class (``SCORE_WINDOWS`` evenly
spaced windows per region): one region in the wrong look fails the sample, as it fails the
oracle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

#: regions with fewer pixels are not judged (specks carry no look)
MIN_PIXELS = 30
#: windows drawn per region and training image, and spread over a region when scoring
TRAIN_WINDOWS = 24
SCORE_WINDOWS = 16


def _network(num_classes: int) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(4, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def windows(
    images: torch.Tensor,
    masks: torch.Tensor,
    window: int,
    per_region: int,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, 4, window, window)`` crops centred on pixels of every region of class ≥ 1 of
    ``images`` (``(B, 3, H, W)`` in ``[-1, 1]``) with ``masks`` (``(B, H, W)`` class ids): the
    region's pixels (0 elsewhere) and its inside map. Also each crop's class and its image index.
    Centres are random with ``rng`` (training), evenly spaced over the region without."""
    half = window // 2
    padded = F.pad(images.float(), (half,) * 4, mode="reflect")
    padded_masks = F.pad(masks.float()[:, None], (half,) * 4, value=-1.0)
    crops, classes, owners = [], [], []
    for i in range(len(images)):
        pixels = F.unfold(padded[i : i + 1], window)[0]  # (3·w², H·W)
        labels = F.unfold(padded_masks[i : i + 1], window)[0]  # (w², H·W)
        flat = masks[i].reshape(-1)
        for c in torch.unique(flat).tolist():
            if c == 0:
                continue
            where = torch.nonzero(flat == c).squeeze(1)
            if len(where) < MIN_PIXELS:
                continue
            n = min(per_region, len(where))
            if rng is not None:
                picks = torch.from_numpy(rng.choice(len(where), size=n, replace=False))
            else:
                picks = torch.from_numpy(np.linspace(0, len(where) - 1, n).round().astype(np.int64))
            centres = where[picks]
            inside = (labels[:, centres] == c).float()  # (w², n)
            values = pixels[:, centres].view(3, window * window, n) * inside
            crop = torch.cat([values, inside[None]]).permute(2, 0, 1)
            crops.append(crop.reshape(n, 4, window, window))
            classes.append(torch.full((n,), c - 1, dtype=torch.long))
            owners.append(torch.full((n,), i, dtype=torch.long))
    if not crops:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0, 4, window, window), empty, empty
    return torch.cat(crops), torch.cat(classes), torch.cat(owners)


class LookJudge:
    """The window classifier and how to score samples with it (module docstring)."""

    def __init__(self, num_classes: int, window: int) -> None:
        self.num_classes, self.window = num_classes, window
        with torch.random.fork_rng(devices=[]):  # a placeholder: must not move the caller's RNG
            self.network = _network(num_classes - 1)

    def fit(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        epochs: int,
        seed: int,
        lr: float = 1e-3,
        progress: Callable[[int, float], None] | None = None,
    ) -> None:
        """Train on real ``images`` (``(B, 3, H, W)`` in ``[-1, 1]``) and their ``masks``;
        ``progress(epoch, loss)`` after each epoch."""
        x, y, _ = windows(images, masks, self.window, TRAIN_WINDOWS, np.random.default_rng(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = _network(self.num_classes - 1)
            optimiser = torch.optim.Adam(self.network.parameters(), lr)
            self.network.train()
            for epoch in range(epochs):
                order = torch.randperm(len(x))
                losses = []
                for start in range(0, len(x), 256):
                    batch = order[start : start + 256]
                    loss = F.cross_entropy(self.network(x[batch]), y[batch])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(float(loss.detach()))
                if progress is not None:
                    progress(epoch + 1, float(np.mean(losses)))
        self.network.eval()

    @torch.inference_mode()
    def accuracy(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        """Share of evenly spaced windows of real ``images`` given their region's class."""
        x, y, _ = windows(images, masks, self.window, SCORE_WINDOWS)
        return float((self.network(x).argmax(1) == y).float().mean()) if len(y) else float("nan")

    @torch.inference_mode()
    def scores(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Per image, the smallest over its regions of the mean probability of the region's own
        class (1 for an image with no region to judge)."""
        x, y, owners = windows(images, masks, self.window, SCORE_WINDOWS)
        out = torch.ones(len(images), dtype=torch.float64)
        if not len(y):
            return out
        probs = torch.cat(
            [F.softmax(self.network(x[i : i + 2048]), 1) for i in range(0, len(x), 2048)]
        )
        own = probs[torch.arange(len(y)), y].double()
        region = owners * self.num_classes + (y + 1)  # one id per (image, class)
        ids, index = torch.unique(region, return_inverse=True)
        means = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, index, own)
        means /= torch.bincount(index, minlength=len(ids)).double()
        return out.scatter_reduce(0, ids // self.num_classes, means, reduce="amin")

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(state)
        self.network.eval()
