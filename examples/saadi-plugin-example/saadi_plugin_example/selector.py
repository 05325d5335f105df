"""``example-tinycnn``: a 3-layer CNN classifier implementing the full :class:`Selector` contract.

Small enough to train on the embedded toy data in seconds on a CPU, and complete enough to show
what a selector owes the pipeline: class-weighted training on real (plus optional synthetic)
data, class-id predictions, a score in ``[0, 1]`` that is the probability of the class each
sample was *asked* to show, and a save/load round trip that reproduces those scores exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from saadi_core.data import Dataset
from saadi_core.errors import DataError, PipelineError
from saadi_core.interfaces import Sample, Selector

_WEIGHTS = "model.pt"
_META = "selector.json"


def _network(channels: int, num_classes: int) -> nn.Module:
    """Three conv blocks and a linear head; global pooling makes it independent of image size."""
    c1, c2, c3 = channels, channels * 2, channels * 4
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c3, num_classes),
    )


class TinyCNN(Selector):
    """Classification selector; see :class:`saadi_plugin_example.options.TinyCNNOptions`."""

    task = "classification"

    def __init__(self, options, context=None) -> None:
        super().__init__(options, context)
        self.model: nn.Module | None = None
        self.class_names: list[str] = []

    # ------------------------------------------------------------------ training

    def fit(self, dataset: Dataset, extra: Sequence[Sample] = ()) -> None:
        if dataset.task != "classification":
            raise PipelineError(
                f"selector '{self.kind or 'example-tinycnn'}' handles classification datasets only; "
                f"dataset '{dataset.name}' is {dataset.task}"
            )
        opts = self.options
        images = dataset.train.image_tensor()
        labels = torch.from_numpy(dataset.train.labels).long()
        if extra:
            images = torch.cat([images, torch.stack([s.image.float().cpu() for s in extra])])
            labels = torch.cat([labels, torch.tensor(self._intended_classes(extra))])
        self.class_names = list(dataset.class_names)
        num_classes = len(self.class_names)

        weight = None
        if opts.class_weighted:
            # Inverse frequency, normalised so a balanced set gets weight 1 per class: surgical
            # datasets are imbalanced and an unweighted selector would under-score rare classes.
            counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
            weight = (labels.numel() / (num_classes * counts)).to(self.context.device)

        # Seed init and batch order without touching the caller's global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            model = _network(opts.channels, num_classes).to(self.context.device)
        order_rng = torch.Generator().manual_seed(opts.seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr)
        loss_fn = nn.CrossEntropyLoss(weight=weight)

        model.train()
        for _ in self.context.progress.track(
            range(opts.epochs), "train example-tinycnn", total=opts.epochs
        ):
            for batch in torch.randperm(len(labels), generator=order_rng).split(opts.batch_size):
                x = images[batch].to(self.context.device)
                y = labels[batch].to(self.context.device)
                optimiser.zero_grad()
                loss_fn(model(x), y).backward()
                optimiser.step()
        self.model = model.eval()

    # ------------------------------------------------------------------ inference

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self._probabilities(images).argmax(dim=1)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        if not samples:
            return []
        intended = torch.tensor(self._intended_classes(samples))
        probs = self._probabilities(torch.stack([s.image for s in samples]))
        return probs.gather(1, intended[:, None]).squeeze(1).tolist()

    @torch.no_grad()
    def _probabilities(self, images: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise PipelineError(
                f"selector '{self.kind or 'example-tinycnn'}' must be fit or loaded before use"
            )
        out = [
            self.model(chunk.float().to(self.context.device)).softmax(dim=1).cpu()
            for chunk in images.split(self.options.batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, len(self.class_names))

    def _intended_classes(self, samples: Sequence[Sample]) -> list[int]:
        ids = [s.condition.class_id for s in samples]
        bad = [
            s.condition.id
            for s, c in zip(samples, ids)
            if c is None or not 0 <= c < len(self.class_names)
        ]
        if bad:
            raise DataError(
                f"selector '{self.kind or 'example-tinycnn'}' needs samples conditioned on a class id in "
                f"[0, {len(self.class_names)}); got condition '{bad[0]}'"
            )
        return ids  # type: ignore[return-value]

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        if self.model is None:
            raise PipelineError(
                f"selector '{self.kind or 'example-tinycnn'}' has nothing to save: fit or load it first"
            )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path / _WEIGHTS)
        meta = {"class_names": self.class_names, "channels": self.options.channels}
        (path / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, path: Path) -> None:
        path = Path(path)
        for name in (_META, _WEIGHTS):
            if not (path / name).is_file():
                raise DataError(f"selector checkpoint incomplete: {path / name} not found")
        meta = json.loads((path / _META).read_text(encoding="utf-8"))
        self.class_names = list(meta["class_names"])
        model = _network(int(meta["channels"]), len(self.class_names))
        model.load_state_dict(torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True))
        self.model = model.to(self.context.device).eval()
