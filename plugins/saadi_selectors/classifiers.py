"""timm image classifiers as selectors (and downstream classification models).

``score`` is the softmax probability of the sample's intended class
(``sample.condition.class_id``): the selector's belief that the image shows what it was
generated to show. Networks are always built with ``pretrained=False``; ``pretrained_path``
loads a local timm checkpoint or state dict with the classifier head left freshly initialised
(the number of classes differs from ImageNet's), after timm's own checkpoint filter has adapted
it (e.g. ViT position embeddings resampled to the dataset's resolution).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, DataError
from saadi_core.interfaces import Sample
from saadi_selectors.training import TorchSelector
from saadi_selectors.weights import load_matching, read_state_dict, require_fit


class TimmClassifier(TorchSelector):
    """A timm classifier selector; subclasses name the timm architecture."""

    task: ClassVar[str] = "classification"
    timm_name: ClassVar[str] = ""

    def _architecture(self, image_size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        return {
            "timm_name": self.timm_name,
            "num_classes": num_classes,
            "drop_rate": self.options.drop_rate,
        }

    def _build(self, arch: dict[str, Any]) -> torch.nn.Module:
        import timm

        kwargs = {k: v for k, v in arch.items() if k != "timm_name"}
        model = timm.create_model(arch["timm_name"], pretrained=False, **kwargs)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        self.input_mean = tuple(cfg.get("mean", self.input_mean))  # type: ignore[assignment]
        self.input_std = tuple(cfg.get("std", self.input_std))  # type: ignore[assignment]
        return model

    def _load_pretrained(self, model: torch.nn.Module, path: Path) -> None:
        state = read_state_dict(path)
        # timm architectures ship a filter that adapts foreign/older checkpoints to the model built
        # (ViT: resample position and patch embeddings; ConvNeXt: convert the original layout)
        adapt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if adapt is not None:
            state = adapt(state, model)
        head = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or ()
        heads = (head,) if isinstance(head, str) else tuple(head)
        report = load_matching(model, state, skip=tuple(f"{h}." for h in heads))
        require_fit(report, path, f"timm model '{self.timm_name}'")
        self.context.progress.log(
            "selector_pretrained", selector=self._name(), path=str(path), **report.as_dict()
        )

    def _split_targets(self, dataset: Dataset) -> np.ndarray:
        if dataset.train.labels is None:
            raise DataError(f"dataset '{dataset.name}' has no class labels in its train split")
        return np.asarray(dataset.train.labels, dtype=np.int64)

    def _sample_target(self, sample: Sample) -> int:
        return self._class_id(sample)

    def _class_id(self, sample: Sample) -> int:
        class_id = sample.condition.class_id
        if class_id is None or not 0 <= class_id < self.num_classes:
            raise DataError(
                f"sample of condition '{sample.condition.id}' ({sample.generator}) has class_id {class_id!r}; "
                f"classification selector '{self._name()}' needs one of 0..{self.num_classes - 1}"
            )
        return int(class_id)

    def _loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=weights)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N,)`` (``int64``, CPU)."""
        return self.logits(images).argmax(dim=1)

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(N, D)``: timm's pre-logits output (the last stage's global
        pooling, before the classifier head), the offline feature space of FID/KID and the
        memorisation check when no Inception weights are given."""
        model = self._require_model()
        self._check_images(images)
        model.eval()
        step = self.options.eval_batch_size
        out = []
        for i in range(0, len(images), step):
            x = self._normalise(images[i : i + step].to(self.device, torch.float32))
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities ``(N, C)``."""
        return self.logits(images).softmax(dim=1)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        """Probability of each sample's intended class, in ``[0, 1]``."""
        self._require_model()
        scores: list[float] = []
        for chunk, images in self._sample_chunks(samples):
            ids = torch.tensor([self._class_id(s) for s in chunk])
            probs = self.probabilities(images)
            scores.extend(probs[torch.arange(len(chunk)), ids].tolist())
        return scores


class ResNet18Selector(TimmClassifier):
    """ResNet-18: small and fast, the ``tiny`` default and the test model."""

    kind = "resnet18"
    timm_name = "resnet18"


class ResNet50Selector(TimmClassifier):
    """ResNet-50, one of the paper's downstream classifiers."""

    kind = "resnet50"
    timm_name = "resnet50"


class ConvNeXtSmallSelector(TimmClassifier):
    """ConvNeXt-S, one of the paper's downstream classifiers."""

    kind = "convnext_small"
    timm_name = "convnext_small"


class ViTSmallSelector(TimmClassifier):
    """ViT-S/16 rebuilt for the dataset's image size and the ``patch_size`` option (a 224-px
    model's 16-px patches would leave a 64-px image with only 4×4 tokens)."""

    kind = "vit_small"
    timm_name = "vit_small_patch16_224"

    def _architecture(self, image_size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        patch = self.options.patch_size
        if image_size[0] % patch or image_size[1] % patch:
            raise ConfigError(
                f"vit_small: image size {image_size} is not divisible by patch_size {patch}; set options.patch_size"
            )
        return super()._architecture(image_size, num_classes) | {
            "img_size": list(image_size),
            "patch_size": patch,
        }
