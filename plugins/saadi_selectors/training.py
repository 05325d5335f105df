"""What classification and segmentation selectors share: data assembly, class weights, the
seeded training loop, device handling and the on-disk format.

A subclass says which network to build (:meth:`TorchSelector._build`), how to load local weights
into it, how to turn its logits into a loss, and how to score a sample; everything else — real
split plus optional synthetic ``extra`` samples, inverse-frequency weighting, batched seeded
augmentation, warm-up + cosine AdamW, progress reporting, ``save``/``load`` — lives here once.

Training data is kept as ``uint8`` images (and small-integer masks) and converted per batch, so
a real dataset of a few thousand 256-px images fits in memory four times over compared to float.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Sample, Selector
from saadi_selectors.augment import AugmentConfig, augment_batch

FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
META_FILE = "selector.json"

#: the kinds of this plugin by task, for error messages that point at the right ones
KINDS_BY_TASK = {
    "classification": "resnet18, resnet50, convnext_small, vit_small",
    "segmentation": "segformer, deeplabv3, deeplabv3plus, upernet, unet",
}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``float [-1, 1]`` images to ``uint8`` (what image files hold, so nothing real is lost)."""
    return ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to ``float32`` in ``[-1, 1]``."""
    return images.float().div(127.5).sub(1.0)


def class_weights(counts: torch.Tensor, mode: str) -> torch.Tensor:
    """Loss weight per class from its count (images or pixels).

    ``inverse``: ``N / (K · n_c)`` over the ``K`` classes present, so a batch drawn from the
    training distribution has mean weight 1 and every class contributes equally in expectation;
    ``sqrt-inverse`` softens that (useful for pixel counts, where background can outnumber a
    small structure 100:1); ``none``: all ones. Absent classes get weight 0 (they never occur).
    """
    counts = counts.double()
    present = counts > 0
    if mode == "none" or not present.any():
        return torch.ones_like(counts, dtype=torch.float32)
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if mode == "sqrt-inverse":
        weights = weights.sqrt()
    weights *= counts.sum() / (weights * counts).sum()  # renormalise: data-weighted mean is 1
    return weights.float()


def adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused where this torch supports it for the parameters' device: on CPU the fused
    kernel is ~10× faster than the per-tensor loop, as costly as a whole ResNet-18 step at 32 px."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch / unsupported device
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TorchSelector(Selector):
    """Base of the torch selectors of this plugin (see module docstring)."""

    task: ClassVar[str] = "classification"
    #: mean/std the network expects on ``[0, 1]`` inputs (subclasses may refine per model)
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, options: Any, context: Any = None) -> None:
        super().__init__(options, context)
        self.model: torch.nn.Module | None = None
        self.class_names: list[str] = []
        self.image_size: tuple[int, int] | None = None
        self.arch: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _architecture(self, image_size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        """JSON-serialisable description from which :meth:`_build` recreates the network."""

    @abstractmethod
    def _build(self, arch: dict[str, Any]) -> torch.nn.Module:
        """A freshly initialised network (random weights, no download)."""

    @abstractmethod
    def _load_pretrained(self, model: torch.nn.Module, path: Path) -> None:
        """Load local weights into ``model`` (head excluded) or raise :class:`ConfigError`."""

    @abstractmethod
    def _split_targets(self, dataset: Dataset) -> np.ndarray:
        """The training targets of the real train split (labels or masks)."""

    @abstractmethod
    def _sample_target(self, sample: Sample) -> Any:
        """The training target of one synthetic sample."""

    @abstractmethod
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch given the per-class ``weights``."""

    # ------------------------------------------------------------------ common API

    @property
    def device(self) -> torch.device:
        return torch.device(self.context.device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _name(self) -> str:
        return self.kind or type(self).__name__

    def fit(self, dataset: Dataset, extra: Sequence[Sample] = ()) -> None:
        """Train from scratch (or from ``pretrained_path``) on ``dataset.train`` plus ``extra``."""
        if dataset.task != self.task:
            raise ConfigError(
                f"selector '{self._name()}' is a {self.task} model but dataset '{dataset.name}' is a {dataset.task} "
                f"dataset; choose a {dataset.task} selector ({KINDS_BY_TASK.get(dataset.task, '?')})"
            )
        self.class_names = list(dataset.class_names)
        images, targets = self._training_tensors(dataset, extra)
        self.image_size = (int(images.shape[-2]), int(images.shape[-1]))
        self.arch = self._architecture(self.image_size, self.num_classes)
        weights = class_weights(self._class_counts(targets), self.options.class_weighting)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # seed locally; leave the caller's RNG alone
            torch.manual_seed(self.options.seed)
            model = self._build(self.arch)
            if self.options.pretrained_path is not None:
                self._load_pretrained(model, Path(self.options.pretrained_path))
            self.model = model.to(self.device)
            self.history = []
            self._train(images, targets, weights.to(self.device))
        self.model.eval()

    def _training_tensors(self, dataset: Dataset, extra: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Real train split plus ``extra`` as ``uint8 (N, 3, H, W)`` images and integer targets."""
        split = dataset.train
        images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2).contiguous()
        targets = torch.from_numpy(np.ascontiguousarray(self._split_targets(dataset)))
        if extra:
            size = tuple(images.shape[-2:])
            for sample in extra:
                if tuple(sample.image.shape[-2:]) != size:
                    raise DataError(
                        f"synthetic sample of condition '{sample.condition.id}' ({sample.generator}) is "
                        f"{tuple(sample.image.shape[-2:])} px but dataset '{dataset.name}' is {size} px"
                    )
            images = torch.cat([images, to_uint8(torch.stack([s.image for s in extra]))])
            extra_targets = torch.stack([torch.as_tensor(self._sample_target(s)) for s in extra])
            targets = torch.cat([targets.long(), extra_targets.long()])
        targets = targets.long()
        if len(images) < 2:
            raise DataError(f"selector '{self._name()}' needs at least 2 training images, dataset '{dataset.name}' has {len(images)}")
        if targets.min() < 0 or targets.max() >= self.num_classes:
            raise DataError(
                f"training targets of dataset '{dataset.name}' hold class id {int(targets.max())} "
                f"outside 0..{self.num_classes - 1} (class_names has {self.num_classes} entries)"
            )
        # small-integer storage: masks of a real dataset would be 8 bytes per pixel as int64
        return images, targets.to(torch.uint8 if self.num_classes <= 256 else torch.int32)

    def _class_counts(self, targets: torch.Tensor) -> torch.Tensor:
        return torch.bincount(targets.reshape(-1).long(), minlength=self.num_classes)

    def _augment_config(self) -> AugmentConfig:
        o = self.options
        return AugmentConfig(degrees=o.affine_degrees, translate=o.affine_translate, scale=o.affine_scale, color_jitter=o.color_jitter)

    def _batches(self, n: int, generator: torch.Generator) -> tuple[int, int, Iterator[torch.Tensor]]:
        """Shuffled index batches for all epochs; the ragged last batch of an epoch is dropped so
        batch-norm never sees a batch of one."""
        batch = min(self.options.batch_size, n)
        per_epoch = n // batch

        def indices() -> Iterator[torch.Tensor]:
            for _ in range(self.options.epochs):
                order = torch.randperm(n, generator=generator)
                for i in range(per_epoch):
                    yield order[i * batch : (i + 1) * batch]

        return per_epoch, per_epoch * self.options.epochs, indices()

    def _train(self, images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> None:
        assert self.model is not None
        o = self.options
        generator = torch.Generator().manual_seed(o.seed)
        per_epoch, total, batches = self._batches(len(images), generator)
        optimizer = adamw(list(self.model.parameters()), o.lr, o.weight_decay)
        warmup = max(1, int(o.warmup_fraction * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total, warmup))
        augment = self._augment_config()
        segmentation = self.task == "segmentation"
        self.model.train()
        running, seen = 0.0, 0
        for step, index in enumerate(self.context.progress.track(batches, f"train selector {self._name()}", total=total)):
            x = to_float(images[index].to(self.device))
            y = targets[index].to(self.device)
            if o.augment:  # random numbers from the CPU generator, pixel work on the device
                x, warped = augment_batch(x, y if segmentation else None, augment, generator)
                y = warped if warped is not None else y
            loss = self._loss(self._forward(x), y.long(), weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach()) * len(index)
            seen += len(index)
            if (step + 1) % per_epoch == 0:
                record = {"epoch": (step + 1) // per_epoch, "loss": running / seen, "lr": schedule.get_last_lr()[0]}
                self.history.append(record)
                self.context.progress.log("selector_epoch", selector=self._name(), **record)
                running, seen = 0.0, 0

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` images to the network's input statistics."""
        mean = torch.tensor(self.input_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.input_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return ((x + 1.0) / 2.0 - mean) / std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        return self.model(self._normalise(x))

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise PipelineError(f"selector '{self._name()}' is not trained: call fit() or load() first")
        return self.model

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"selector '{self._name()}' expects images (N, 3, H, W), got {tuple(images.shape)}")
        if self.image_size is not None and tuple(images.shape[-2:]) != self.image_size:
            raise DataError(
                f"selector '{self._name()}' was trained on {self.image_size} px images, got {tuple(images.shape[-2:])} px"
            )

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Network outputs for ``images`` (``(N, 3, H, W)`` in ``[-1, 1]``), in batches, on CPU."""
        model = self._require_model()
        self._check_images(images)
        model.eval()
        out = [
            self._forward(images[i : i + self.options.eval_batch_size].to(self.device, torch.float32)).float().cpu()
            for i in range(0, len(images), self.options.eval_batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0)

    def _sample_chunks(self, samples: Sequence[Sample]) -> Iterator[tuple[Sequence[Sample], torch.Tensor]]:
        """``(chunk, images)`` over ``samples`` so a large pool is never stacked at once."""
        step = self.options.eval_batch_size
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            yield chunk, torch.stack([s.image.float().cpu() for s in chunk])

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """``model.pt`` (state dict) and ``selector.json`` (kind, task, classes, architecture)."""
        model = self._require_model()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path / MODEL_FILE)
        meta = {
            "format": FORMAT_VERSION,
            "kind": self._name(),
            "task": self.task,
            "class_names": self.class_names,
            "image_size": list(self.image_size or ()),
            "arch": self.arch,
            "history": self.history,
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2))

    def load(self, path: Path) -> None:
        """Rebuild the network from ``selector.json`` and load ``model.pt`` exactly."""
        path = Path(path)
        meta_file = path / META_FILE
        if not meta_file.is_file() or not (path / MODEL_FILE).is_file():
            raise DataError(f"'{path}' holds no saved selector ({META_FILE} and {MODEL_FILE} expected)")
        meta = json.loads(meta_file.read_text())
        if meta.get("task") != self.task or (self.kind and meta.get("kind") != self.kind):
            raise ConfigError(
                f"'{path}' holds a {meta.get('task')} selector of kind '{meta.get('kind')}', not '{self._name()}' ({self.task})"
            )
        self.class_names = list(meta["class_names"])
        self.image_size = tuple(meta["image_size"]) if meta.get("image_size") else None  # type: ignore[assignment]
        self.arch = dict(meta["arch"])
        self.history = list(meta.get("history", []))
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation must not move the caller's RNG
            model = self._build(self.arch)
        model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
        self.model = model.to(self.device).eval()
