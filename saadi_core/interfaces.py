"""The four plugin interfaces and the records that flow between them.

These names are the contract between the core pipeline and every plugin. The pipeline only ever
talks to a generator, selector, pairing strategy or aligner through the methods below, so a
third-party implementation that honours the docstrings runs unchanged in every stage.

Conventions (see ``docs/method.md``):

* images are ``float32`` tensors in ``[-1, 1]``, channels first: one image ``(3, H, W)``,
  a batch ``(N, 3, H, W)``;
* masks are ``int64`` class-id tensors: one mask ``(H, W)``, a batch ``(N, H, W)``; class ids
  index ``Dataset.class_names`` (id 0 is background for segmentation datasets);
* randomness is owned by the caller: every method that samples takes an integer ``seed`` and
  must be deterministic for a given seed on a given device, so base and aligned generators can
  be compared on *the same* seeds.

This module must stay importable without torch (the CLI imports it to list plugins); tensor types
are only named under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from pydantic import BaseModel

    from saadi_core.data.dataset import Dataset

TASKS = ("classification", "segmentation")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class Condition:
    """What one generated sample is asked to show.

    ``id`` is stable and unique within a run (``"class:ovary"``, ``"mask:train/0012"``); pairing
    groups samples by it, because Diffusion-DPO needs winner and loser under the same condition.
    A classification condition sets ``class_id``/``class_name`` (and usually ``prompt``); a
    segmentation condition sets ``mask`` (``int64 (H, W)``); a simulator-to-real condition also
    sets ``control`` (``float32 (3, H, W)`` in ``[-1, 1]``). Generators may store extra,
    JSON-serialisable facts in ``meta``.
    """

    id: str
    class_id: int | None = None
    class_name: str | None = None
    prompt: str | None = None
    mask: torch.Tensor | None = None
    control: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Sample:
    """One generated image with its provenance.

    ``image`` is ``float32 (3, H, W)`` in ``[-1, 1]``. ``mask`` is the sample's label map
    (``int64 (H, W)``): the conditioning mask for mask-conditioned generators, the generated mask
    for joint image+mask generators, ``None`` for classification. ``seed`` is the seed the
    generator was called with and ``index`` the position within that call, so
    ``(generator, condition.id, seed, index)`` reproduces the sample.
    """

    image: torch.Tensor
    condition: Condition
    generator: str
    seed: int
    index: int = 0
    mask: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the image (and mask) bytes: identifies the pixels, not the object."""
        digest = hashlib.sha256(self.image.detach().cpu().contiguous().numpy().tobytes())
        if self.mask is not None:
            digest.update(self.mask.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Pair:
    """A preferred (``winner``) and non-preferred (``loser``) sample under one condition."""

    winner: Sample
    loser: Sample
    winner_score: float
    loser_score: float

    @property
    def condition_id(self) -> str:
        return self.winner.condition.id


@dataclass
class PairSet:
    """The pairing stage's output: the pairs plus an honest account of what could not be paired.

    ``stats`` always holds at least ``n_pairs``, ``n_conditions``, ``conditions_without_winner``
    and ``conditions_without_loser`` (lists of condition ids); strategies may add more.
    """

    pairs: list[Pair]
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)


# --------------------------------------------------------------------------- run context


class ProgressReporter(Protocol):
    """How plugins report progress on long work; the CLI supplies a rich implementation.

    ``track`` wraps an iterable (``for step in progress.track(range(n), "train generator")``);
    plugins must not print or create their own progress bars, so ``--quiet`` and the JSON event
    log see everything.
    """

    def track(
        self, iterable: Iterable[Any], description: str, total: int | None = None
    ) -> Iterable[Any]: ...

    def log(self, event: str, **fields: Any) -> None: ...


class _SilentProgress:
    """Progress reporter that reports nothing (tests, library use)."""

    def track(
        self, iterable: Iterable[Any], description: str, total: int | None = None
    ) -> Iterable[Any]:
        return iterable

    def log(self, event: str, **fields: Any) -> None:
        return None


@dataclass
class RunContext:
    """What every plugin instance is given besides its options.

    ``device`` is a torch device string; ``profile`` is ``"tiny"`` or ``"paper"`` (or a user
    profile); ``work_dir`` is a scratch directory owned by the current stage; ``accelerator`` is an
    ``accelerate.Accelerator`` when the run is launched with ``accelerate launch`` (else ``None``).
    """

    device: str = "cpu"
    profile: str = "tiny"
    work_dir: Path | None = None
    progress: ProgressReporter = field(default_factory=_SilentProgress)
    accelerator: Any | None = None


class Component:
    """Base of every plugin implementation: keeps the validated options and the run context.

    The registry builds an instance as ``cls(options, context)`` where ``options`` is an instance
    of the ``Options`` model registered with the kind (already merged with profile defaults).
    """

    kind: ClassVar[str] = ""

    def __init__(self, options: BaseModel, context: RunContext | None = None) -> None:
        self.options = options
        self.context = context or RunContext()

    def cache_inputs(self) -> dict[str, str]:
        """Fingerprints of what this component reads besides its options and the run's data —
        weights shipped inside a plugin, say. They join the cache key of every stage that uses the
        component, so replacing such a file recomputes those stages instead of reusing results
        made from the old one. Default: nothing."""
        return {}


# --------------------------------------------------------------------------- diffusion target


class DiffusionTarget(Protocol):
    """The small surface one Diffusion-DPO implementation needs from any diffusion generator.

    ``encode`` maps samples to the clean diffusion variable ``x0`` (latents or pixels,
    ``(N, C, h, w)``) and the conditioning ``cond``: a ``dict[str, Tensor]`` whose tensors are all
    batched on dim 0, so the aligner can index, repeat and concatenate it without knowing what it
    holds (prompt embeddings, masks, masked-image latents, control images). ``predict`` returns the
    network output for ``x_t`` at integer timesteps ``t`` (``(N,)``) in the scheduler's
    ``prediction_type`` ("epsilon", "v_prediction" or "sample"); it must route every forward
    through ``trainable_module()`` so LoRA adapters placed there take effect and can be disabled to
    obtain the reference prediction. ``lora_target_modules`` names the sub-modules (suffixes as
    peft understands them) an aligner adapts by default.
    """

    noise_scheduler: Any

    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor: ...

    def trainable_module(self) -> torch.nn.Module: ...

    def lora_target_modules(self) -> list[str]: ...


# --------------------------------------------------------------------------- interfaces


class Generator(Component, ABC):
    """Stage 1: a generative model trained (or loaded) on the real training split.

    Lifecycle: ``fit`` or ``load``, then any number of ``sample`` calls. ``save(path)`` writes
    everything ``load(path)`` needs into the directory ``path`` (the run store makes it atomic);
    after alignment it includes the adapters, so a saved aligned generator samples aligned images.
    """

    @abstractmethod
    def fit(self, dataset: Dataset) -> None:
        """Train on ``dataset.train`` (real data only). Owns its optimiser and RNG seeding
        (from its options); reports progress through ``self.context.progress``."""

    @abstractmethod
    def conditions(self, dataset: Dataset) -> list[Condition]:
        """The conditions a pool is generated for: class prompts, training masks, simulator
        frames, or one unconditional condition. Deterministic for a dataset."""

    @abstractmethod
    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        """Generate ``n_per_condition`` samples for each condition, deterministically from
        ``seed``. Sample ``i`` of condition ``c`` must depend only on ``(seed, c, i)``, not on
        batch composition, so subsets can be regenerated and base/aligned compared per seed."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the model (and any adapters) to the directory ``path``."""

    @abstractmethod
    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote."""

    def diffusion_target(self) -> DiffusionTarget:
        """The :class:`DiffusionTarget` view used by diffusion aligners. Generators that are not
        diffusion models keep this default, and diffusion aligners refuse them clearly."""
        raise NotImplementedError(f"generator '{self.kind}' does not expose a diffusion target")


class Selector(Component, ABC):
    """Stage 2 (and downstream evaluation): a task model trained on real data.

    Classification selectors score a sample by the probability of its intended class;
    segmentation selectors by the mean Dice, over the classes present in the sample's mask,
    between their prediction and that mask. Scores are in ``[0, 1]``, higher is better.
    """

    task: ClassVar[str] = "classification"

    @abstractmethod
    def fit(self, dataset: Dataset, extra: Sequence[Sample] = ()) -> None:
        """Train on the real training split plus optional ``extra`` synthetic samples (used by
        downstream evaluation and by iterative refinement). Seeds come from the options."""

    @abstractmethod
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N,)`` (classification) or masks ``(N, H, W)`` (segmentation) for images
        ``(N, 3, H, W)`` in ``[-1, 1]``."""

    @abstractmethod
    def score(self, samples: Sequence[Sample]) -> list[float]:
        """One score in ``[0, 1]`` per sample, in order."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(N, D)`` for images ``(N, 3, H, W)`` in ``[-1, 1]`` (e.g. the pooled
        backbone output). Optional: fidelity metrics (FID/KID, memorisation) use it as their
        offline feature extractor when no Inception weights are given."""
        raise NotImplementedError(f"selector '{self.kind}' does not expose image features")

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained model to the directory ``path``."""

    @abstractmethod
    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote."""


class PairingStrategy(Component, ABC):
    """Stage 2b: turn scored samples into preference pairs.

    Implementations pair within one condition unless their options say otherwise, break ties and
    cap the number of pairs deterministically from ``seed``, and report empty groups in
    :attr:`PairSet.stats` instead of failing silently.
    """

    @abstractmethod
    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        """Pairs from ``samples`` scored by ``scores`` (same order, same length)."""


@dataclass
class AlignInputs:
    """Everything an aligner may use besides the generator.

    ``pool``/``scores`` are the generated pool and its selector scores (refinement re-scores the
    *original* pool); ``new_selector`` builds a fresh, untrained selector of the run's kind;
    ``validate`` (optional) samples a fixed held-out set of seeds with a generator and returns
    metrics such as ``{"selector_pass": 0.61}`` for validation-based checkpoint selection; it may
    take ``size=`` (number of samples) and return ``"per_sample"``: ``{metric: [value per sample]}``
    on the same seeds every call, so candidates can be compared paired, and ``"groups"``: the
    condition id of each of those samples (a per-condition guard compares conditions separately),
    and ``"sampled_conditions": True`` when those conditions are a random draw of layouts the
    generator never saw (then a confidence bound must count conditions, not samples, to say
    anything about other layouts).
    """

    pairs: PairSet
    dataset: Dataset
    pool: Sequence[Sample] = ()
    scores: Sequence[float] = ()
    selector: Selector | None = None
    pairing: PairingStrategy | None = None
    new_selector: Callable[[], Selector] | None = None
    validate: Callable[..., dict[str, Any]] | None = None
    seed: int = 0
    #: the run's h (``RunSession.threshold``): what the unpaired aligners label the pool with
    #: unless their own option sets another; ``None`` outside a run
    threshold: float | None = None


@dataclass
class AlignResult:
    """An aligned generator plus its training history (one dict per logged step: loss,
    implicit accuracy, reward margin, grad norm, validation metrics, …).

    ``handover`` carries what :meth:`Aligner.save` needs beyond the generator and the JSON
    ``meta`` (e.g. the ``sequence`` aligner's earlier parts, saved before they were merged into
    the weights). It is never written anywhere, and it travels with the result, so any instance
    of the aligner kind can save it (``iterative`` saves its inner aligner's result with a new
    instance)."""

    generator: Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    handover: dict[str, Any] = field(default_factory=dict)


class Aligner(Component, ABC):
    """Stage 3: fine-tune a generator towards preferred samples (e.g. Diffusion-DPO on LoRA).

    The aligner owns what it adds to a generator (e.g. LoRA adapters): ``save`` writes it next to
    the history, ``restore`` puts it back onto a freshly loaded *base* generator, so the run store
    can cache the alignment stage without generators knowing about adapters.
    """

    @abstractmethod
    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        """Return the aligned generator (the same object with adapters, or a new one). Must not
        modify the base weights; ``work_dir`` is scratch space for checkpoints."""

    @abstractmethod
    def save(self, result: AlignResult, path: Path) -> None:
        """Write what alignment added (adapters, history) to the directory ``path``."""

    @abstractmethod
    def restore(self, generator: Generator, path: Path) -> Generator:
        """Apply what :meth:`save` wrote to a base ``generator`` and return the aligned one."""
