"""segmentation_models_pytorch segmenters as selectors (and downstream segmentation models).

``score`` is the mean Dice, over the classes present in the sample's mask, between the
selector's prediction and that mask: does the generated image show, pixel for pixel, the layout
it was conditioned on (or generated with)? The background class is left out of the mean by
default (``score_include_background``) because it covers most pixels of nearly every mask and
would push every score towards 1; a mask with no foreground is scored by its background Dice.

Kinds: ``segformer`` (Mix-Transformer ``mit_b0`` encoder), ``deeplabv3`` (smp ``DeepLabV3``,
the paper's model: dilated encoder at output stride 8, ASPP head), ``deeplabv3plus`` (smp
``DeepLabV3Plus``: adds a stride-4 skip that sharpens boundaries on small images), ``upernet``
and ``unet`` (``resnet18`` encoders for the ``tiny`` profile). Encoders are built with
``encoder_weights=None`` — nothing is downloaded; ``pretrained_path`` loads a local file holding
either a whole smp model's state dict or encoder-only weights (e.g. an ImageNet ResNet).

smp encoders reduce the input by up to 32; images whose sides are not multiples of 32 are padded
(edge replication) before the network and the logits cropped back, so any dataset size works.
Training loss: class-weighted pixel cross-entropy plus a soft multi-class Dice loss (``dice_weight``),
both aimed at small structures that plain cross-entropy would ignore.

``score_by: look`` (or ``dice-and-look``) scores by how each region looks instead (or as well):
:mod:`saadi_selectors.looks` trains a window classifier on the same real images next to the
segmenter, and saves it beside the segmenter (``look.pt``). Prediction, features and the test
Dice stay the segmenter's, so the selector still serves as a downstream model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, DataError
from saadi_core.interfaces import Sample
from saadi_selectors.looks import LookJudge
from saadi_selectors.training import TorchSelector
from saadi_selectors.weights import count_matching, load_matching, read_state_dict, require_fit

#: every smp encoder used here reduces resolution by at most this factor
PAD_MULTIPLE = 32
_HEADS = ("segmentation_head.", "classification_head.")
#: the look judge's weights, beside the segmenter's (``score_by`` 'look' or 'dice-and-look')
LOOK_FILE = "look.pt"


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def dice_per_sample(
    pred: torch.Tensor, masks: torch.Tensor, num_classes: int, include_background: bool
) -> torch.Tensor:
    """Mean Dice per sample over the classes present in each mask (``pred``, ``masks``:
    ``(N, H, W)`` class ids). Background (id 0) is counted only if ``include_background`` or the
    mask has no other class."""
    classes = torch.arange(num_classes, device=masks.device).view(1, -1, 1, 1)
    truth = masks.unsqueeze(1) == classes  # (N, C, H, W)
    guess = pred.unsqueeze(1) == classes
    inter = (truth & guess).sum(dim=(2, 3)).double()
    total = (truth.sum(dim=(2, 3)) + guess.sum(dim=(2, 3))).double()
    present = truth.any(dim=3).any(dim=2)
    if not include_background:
        has_foreground = present[:, 1:].any(dim=1, keepdim=True)
        present = present & ~(
            has_foreground & (torch.arange(num_classes, device=masks.device) == 0)
        )
    dice = torch.where(present, 2.0 * inter / total.clamp(min=1.0), torch.zeros_like(inter))
    return dice.sum(dim=1) / present.sum(dim=1).clamp(min=1)


class SmpSegmenter(TorchSelector):
    """An smp segmenter selector; subclasses name the smp architecture."""

    task: ClassVar[str] = "segmentation"
    smp_class: ClassVar[str] = ""

    def __init__(self, options: Any, context: Any = None) -> None:
        super().__init__(options, context)
        self.look: LookJudge | None = None

    def fit(self, dataset: Dataset, extra: Sequence[Sample] = ()) -> None:
        """Train the segmenter (real train split plus ``extra``) and, when the score needs it, the
        look judge on the real train split only: a class's look is learnt from real images."""
        super().fit(dataset, extra)
        self.look = None
        if self.options.score_by == "dice":
            return
        judge = LookJudge(self.num_classes, self.options.look_window)
        judge.fit(
            dataset.train.image_tensor(),
            torch.from_numpy(self._split_targets(dataset)),
            self.options.look_epochs,
            self.options.seed,
            progress=lambda epoch, loss: self.context.progress.log(
                "selector_look.train", epoch=epoch, loss=loss
            ),
        )
        if dataset.test.masks is not None and len(dataset.test):
            accuracy = judge.accuracy(
                dataset.test.image_tensor(),
                torch.from_numpy(np.asarray(dataset.test.masks, dtype=np.int64)),
            )
            self.history.append({"look_test_window_accuracy": accuracy})
            self.context.progress.log("selector_look", test_window_accuracy=accuracy)
        self.look = judge

    def _architecture(self, image_size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        return {
            "smp_class": self.smp_class,
            "encoder": self.options.encoder,
            "classes": num_classes,
        }

    def _build(self, arch: dict[str, Any]) -> torch.nn.Module:
        import segmentation_models_pytorch as smp

        cls = getattr(smp, arch["smp_class"])
        try:
            return cls(encoder_name=arch["encoder"], encoder_weights=None, classes=arch["classes"])
        except KeyError:
            raise ConfigError(
                f"selector '{self._name()}': options.encoder '{arch['encoder']}' is not an smp encoder "
                "(segmentation_models_pytorch.encoders.get_encoder_names() lists them)"
            ) from None
        except ValueError as exc:  # an encoder the architecture cannot use
            raise ConfigError(
                f"selector '{self._name()}': options.encoder '{arch['encoder']}': {exc}"
            ) from None

    def _load_pretrained(self, model: torch.nn.Module, path: Path) -> None:
        state = read_state_dict(path)
        encoder: torch.nn.Module = model.encoder  # type: ignore[assignment]
        # a whole smp model's checkpoint fits the model; ImageNet backbone weights fit the encoder
        whole = count_matching(model, state, skip=_HEADS) >= count_matching(encoder, state)
        target = "model" if whole else "encoder"
        report = (
            load_matching(model, state, skip=_HEADS) if whole else load_matching(encoder, state)
        )
        require_fit(report, path, f"the {target} of smp {self.smp_class}('{self.options.encoder}')")
        self.context.progress.log(
            "selector_pretrained",
            selector=self._name(),
            path=str(path),
            target=target,
            **report.as_dict(),
        )

    def _split_targets(self, dataset: Dataset) -> np.ndarray:
        if dataset.train.masks is None:
            raise DataError(f"dataset '{dataset.name}' has no masks in its train split")
        return np.asarray(dataset.train.masks, dtype=np.int64)

    def _sample_target(self, sample: Sample) -> torch.Tensor:
        return self._mask(sample)

    def _mask(self, sample: Sample) -> torch.Tensor:
        mask = sample.mask if sample.mask is not None else sample.condition.mask
        if mask is None:
            raise DataError(
                f"sample of condition '{sample.condition.id}' ({sample.generator}) has no mask; "
                f"segmentation selector '{self._name()}' scores against the sample's mask"
            )
        if tuple(mask.shape) != tuple(sample.image.shape[-2:]):
            raise DataError(
                f"sample of condition '{sample.condition.id}': mask {tuple(mask.shape)} does not match image "
                f"{tuple(sample.image.shape[-2:])}"
            )
        mask = mask.long().cpu()
        if mask.numel() and (mask.min() < 0 or mask.max() >= self.num_classes):
            raise DataError(
                f"sample of condition '{sample.condition.id}': mask holds class id {int(mask.max())} "
                f"outside 0..{self.num_classes - 1}"
            )
        return mask

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        h, w = x.shape[-2:]
        return self.model(_pad_to_multiple(self._normalise(x), PAD_MULTIPLE))[..., :h, :w]

    def _loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        loss = F.cross_entropy(logits, targets, weight=weights)
        if self.options.dice_weight > 0:
            from segmentation_models_pytorch.losses import DiceLoss

            loss = loss + self.options.dice_weight * DiceLoss(mode="multiclass", from_logits=True)(
                logits, targets
            )
        return loss

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled deepest encoder feature map ``(N, C)`` (C = 512 for a ResNet-18
        encoder, 256 for mit_b0): the offline feature space of FID/KID and the memorisation check
        when no Inception weights are given. Inputs are padded to a multiple of 32 as for
        :meth:`logits`."""
        model = self._require_model()
        self._check_images(images)
        model.eval()
        step = self.options.eval_batch_size
        out = []
        for i in range(0, len(images), step):
            x = _pad_to_multiple(
                self._normalise(images[i : i + step].to(self.device, torch.float32)), PAD_MULTIPLE
            )
            out.append(model.encoder(x)[-1].mean(dim=(2, 3)).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class-id masks ``(N, H, W)`` (``int64``, CPU)."""
        return self.logits(images).argmax(dim=1)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        """Per ``score_by``: mean Dice over the classes present in each sample's mask, the look
        score of its regions, or the lower of the two (see module docstring)."""
        self._require_model()
        by = self.options.score_by
        if by != "dice" and self.look is None:
            raise DataError(
                f"selector '{self._name()}' scores by '{by}' but holds no look judge (saved before score_by was set?); "
                "train it again"
            )
        scores: list[float] = []
        for chunk, images in self._sample_chunks(samples):
            masks = torch.stack([self._mask(s) for s in chunk])
            parts = []
            if by != "look":
                parts.append(
                    dice_per_sample(
                        self.predict(images),
                        masks,
                        self.num_classes,
                        self.options.score_include_background,
                    )
                )
            if by != "dice":
                assert self.look is not None
                parts.append(self.look.scores(images, masks))
            scores.extend(torch.stack(parts).min(dim=0).values.tolist())
        return scores

    def save(self, path: Path) -> None:
        """The segmenter (see :meth:`TorchSelector.save`) and the look judge, when trained."""
        super().save(path)
        if self.look is not None:
            torch.save(
                {"window": self.look.window, "state": self.look.state()}, Path(path) / LOOK_FILE
            )

    def load(self, path: Path) -> None:
        super().load(path)
        self.look = None
        if (Path(path) / LOOK_FILE).is_file():
            saved = torch.load(Path(path) / LOOK_FILE, map_location="cpu", weights_only=True)
            self.look = LookJudge(self.num_classes, int(saved["window"]))
            self.look.load_state(saved["state"])


class SegformerSelector(SmpSegmenter):
    kind = "segformer"
    smp_class = "Segformer"


class DeepLabV3Selector(SmpSegmenter):
    kind = "deeplabv3"
    smp_class = "DeepLabV3"


class DeepLabV3PlusSelector(SmpSegmenter):
    kind = "deeplabv3plus"
    smp_class = "DeepLabV3Plus"


class UPerNetSelector(SmpSegmenter):
    kind = "upernet"
    smp_class = "UPerNet"


class UnetSelector(SmpSegmenter):
    kind = "unet"
    smp_class = "Unet"
