"""What classification and segmentation selectors share: data assembly, class weights, the
seeded training loop, device handling and the on-disk format.

A subclass says which network to build (:meth:`TorchSelector._build`), how to load local weights
into it, how to turn its logits into a loss, and how to score a sample; everything else — real
split plus optional synthetic ``extra`` samples, inverse-frequency weighting, batched seeded
augmentation, warm-up + cosine AdamW, progress reporting, ``save``/``load`` — lives here once.

Training runs through an ``accelerate.Accelerator`` (the run's when it was launched with
``accelerate launch``, else a single-process one), so the same loop trains on one CPU or on
several processes: the data loader is sharded (``batch_size`` is per process), DDP averages the
gradients, the forward runs under the accelerator's autocast (bf16 when configured, weights fp32)
and every process ends with the same weights.

Training data is kept as ``uint8`` images (and small-integer masks) and converted per batch, so
a real dataset of a few thousand 256-px images fits in memory four times over compared to float.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from saadi_core.data.dataset import Dataset
from saadi_core.diffusion.builders import make_accelerator
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Sample, Selector
from saadi_selectors.augment import AugmentConfig, augment_batch

FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
META_FILE = "selector.json"
#: offset between the seed of the shuffling and the seeds of the per-process augmentation streams
AUGMENT_SEED_OFFSET = 7919

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


def adamw(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
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


def _average_buffers(model: torch.nn.Module, accelerator: Any) -> None:
    """Average the floating buffers (batch-norm running statistics) over the processes.

    DDP keeps the parameters identical but each process updates its running statistics on its
    own batches after the per-step broadcast from the first process, so they differ by the
    last step; their mean is identical everywhere and estimated from more data.
    """
    for buffer in model.buffers():
        if buffer.is_floating_point():
            buffer.copy_(accelerator.reduce(buffer.detach(), reduction="mean"))


def _release(accelerator: Any, *objects: Any) -> None:
    """Drop the accelerator's references to one training's prepared objects.

    ``Accelerator.prepare`` keeps every model, optimiser, scheduler and loader it wrapped; a run's
    shared accelerator would otherwise hold the network and AdamW state of every selector and
    downstream model trained in the run. ``free_memory`` would also drop other stages' objects.
    """
    for name in ("_models", "_optimizers", "_schedulers", "_dataloaders"):
        registry = getattr(accelerator, name, None)
        if isinstance(registry, list):
            registry[:] = [kept for kept in registry if not any(kept is obj for obj in objects)]


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
    def _loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Training loss of a batch given the per-class ``weights``."""

    # ------------------------------------------------------------------ common API

    @property
    def device(self) -> torch.device:
        """Where the model lives: the launched run's process device (each process its own GPU),
        else ``context.device``."""
        if self.context.accelerator is not None:
            return torch.device(self.context.accelerator.device)
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
        accelerator = self._accelerator()
        device = torch.device(accelerator.device)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # seed locally; leave the caller's RNG alone
            torch.manual_seed(self.options.seed)  # the same initial weights in every process
            model = self._build(self.arch)
            if self.options.pretrained_path is not None:
                self._load_pretrained(model, Path(self.options.pretrained_path))
            self.history = []
            model = self._train(model, images, targets, weights.to(device), accelerator)
        self.model = model.to(self.device).eval()

    def _accelerator(self) -> Any:
        """The run's accelerator, or a single-process one with this selector's ``mixed_precision``."""
        return make_accelerator(
            self.context.accelerator,
            str(self.context.device),
            self.options.mixed_precision,
            who=f"selector '{self._name()}'",
        )

    def _training_tensors(
        self, dataset: Dataset, extra: Sequence[Sample]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real train split plus ``extra`` as ``uint8 (N, 3, H, W)`` images and integer targets."""
        split = dataset.train
        images = (
            torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2).contiguous()
        )
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
            raise DataError(
                f"selector '{self._name()}' needs at least 2 training images, dataset '{dataset.name}' has {len(images)}"
            )
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
        return AugmentConfig(
            degrees=o.affine_degrees,
            translate=o.affine_translate,
            scale=o.affine_scale,
            color_jitter=o.color_jitter,
        )

    def _train(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        accelerator: Any,
    ) -> torch.nn.Module:
        """Warm-up + cosine AdamW on shuffled, augmented batches; returns the trained, unwrapped
        network (the same in every process).

        The ragged last batch of an epoch is dropped so batch-norm never sees a batch of one;
        with several processes each takes its own share of every epoch's batches.
        """
        o = self.options
        processes = accelerator.num_processes
        if len(images) < 2 * processes:
            raise DataError(
                f"selector '{self._name()}' needs at least 2 training images per process; "
                f"{len(images)} images for {processes} processes"
            )
        batch = min(o.batch_size, len(images) // processes)
        shuffle = torch.Generator().manual_seed(
            o.seed
        )  # the same order in every process, which each shards
        loader = DataLoader(
            TensorDataset(images, targets),
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            generator=shuffle,
        )
        loader = accelerator.prepare(
            loader
        )  # sharded first: its length per process sets the schedule
        per_epoch = len(loader)
        # the prepared scheduler steps once per process at every optimisation step (accelerate's
        # convention for a global batch `processes` times larger), so the schedule counts those
        total = per_epoch * o.epochs * processes
        warmup = max(1, int(o.warmup_fraction * total))
        model = model.to(accelerator.device)
        optimizer = adamw(list(model.parameters()), o.lr, o.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _lr_factor(step, total, warmup)
        )
        prepared = accelerator.prepare(model, optimizer, schedule)
        self.model, optimizer, schedule = prepared  # _forward runs the prepared (DDP) network
        # each process augments its own batches with its own random stream (CPU numbers, device pixels)
        rng = torch.Generator().manual_seed(
            o.seed + AUGMENT_SEED_OFFSET * (1 + accelerator.process_index)
        )
        augment = self._augment_config()
        segmentation = self.task == "segmentation"
        batches = ((epoch, x, y) for epoch in range(o.epochs) for x, y in loader)
        if accelerator.is_main_process:
            batches = self.context.progress.track(
                batches, f"train selector {self._name()}", total=per_epoch * o.epochs
            )
        self.model.train()
        running = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # loss sum, images
        for step, (epoch, x, y) in enumerate(batches):
            x = to_float(x)
            if o.augment:
                x, warped = augment_batch(x, y if segmentation else None, augment, rng)
                y = warped if warped is not None else y
            with accelerator.autocast():
                logits = self._forward(x)
            loss = self._loss(logits.float(), y.long(), weights)
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            running[0] += loss.detach().double() * len(x)
            running[1] += len(x)
            if (step + 1) % per_epoch == 0:
                total_loss, seen = accelerator.reduce(
                    running, reduction="sum"
                ).tolist()  # every process's batches
                record = {
                    "epoch": epoch + 1,
                    "loss": total_loss / seen,
                    "lr": schedule.get_last_lr()[0],
                }
                self.history.append(record)
                if accelerator.is_main_process:
                    self.context.progress.log("selector_epoch", selector=self._name(), **record)
                running.zero_()
        accelerator.wait_for_everyone()
        trained = accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        if processes > 1:
            _average_buffers(trained, accelerator)
        _release(accelerator, self.model, optimizer, schedule, loader)
        return trained

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
            raise PipelineError(
                f"selector '{self._name()}' is not trained: call fit() or load() first"
            )
        return self.model

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise DataError(
                f"selector '{self._name()}' expects images (N, 3, H, W), got {tuple(images.shape)}"
            )
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
            self._forward(
                images[i : i + self.options.eval_batch_size].to(self.device, torch.float32)
            )
            .float()
            .cpu()
            for i in range(0, len(images), self.options.eval_batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0)

    def _sample_chunks(
        self, samples: Sequence[Sample]
    ) -> Iterator[tuple[Sequence[Sample], torch.Tensor]]:
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
            raise DataError(
                f"'{path}' holds no saved selector ({META_FILE} and {MODEL_FILE} expected)"
            )
        meta = json.loads(meta_file.read_text())
        if meta.get("task") != self.task or (self.kind and meta.get("kind") != self.kind):
            raise ConfigError(
                f"'{path}' holds a {meta.get('task')} selector of kind '{meta.get('kind')}', not '{self._name()}' ({self.task})"
            )
        self.class_names = list(meta["class_names"])
        self.image_size = tuple(meta["image_size"]) if meta.get("image_size") else None  # type: ignore[assignment]
        self.arch = dict(meta["arch"])
        self.history = list(meta.get("history", []))
        with torch.random.fork_rng(
            devices=[]
        ):  # the throw-away initialisation must not move the caller's RNG
            model = self._build(self.arch)
        model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
        self.model = model.to(self.device).eval()
