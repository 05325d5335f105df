"""One execution of the loop: the resolved config, the registry, the run context and the store.

:class:`RunSession` holds what every stage needs (how to build a component, how to key and run
a stage, the pass threshold h, the run's seeds); the stages themselves live in
:mod:`saadi_core.stages`, one module each, and :func:`saadi_core.pipeline.run_pipeline` calls them
in the order of the SAADi method. ``saadi study`` builds sessions the same way.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saadi_core import __version__, distributed
from saadi_core.config import ComponentSpec, RunConfig, YamlDoc, validate_components
from saadi_core.interfaces import Generator, PairSet, RunContext, Selector
from saadi_core.registry import Registry
from saadi_core.store import RunStore, StageResult

#: components chosen when the config leaves them open, by dataset task
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {"generator": "ssd", "selector": "resnet18", "pairing": ("threshold", {})},
    # a segmenter's score is a Dice: on toy-seg SSI samples score 0.83-0.95, so the paper's h 0.5
    # leaves no losers; h 0.9 splits the pool (set pairing.options.threshold to change it).
    # Pairs stay within one mask-class set: a Dice score is easier to earn without small classes,
    # so pairs across class sets teach a mask-drawing generator to drop them (reward hacking)
    "segmentation": {
        "generator": "ssi",
        "selector": "segformer",
        "pairing": ("threshold", {"threshold": 0.9, "group_by": "mask-classes"}),
    },
}

#: profile defaults of the run-level sizes, as totals over all conditions (plugins hold their own
#: option defaults): a generator with 5 class conditions gets 128 pool samples per class in tiny,
#: one with 16 mask conditions 40 per mask — the CPU budget is the total, not the per-condition count
PROFILE_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"pool_size": 640, "validation_size": 80},
    "paper": {"pool_size": 3072, "validation_size": 320},
}


#: the libraries whose code computes a run's figures besides torch, recorded in the manifest: a
#: later session in a fresh environment got other figures from the same toy-seg config and seeds,
#: and without the versions it could not tell why
RESULT_LIBRARIES = (
    "accelerate",
    "diffusers",
    "numpy",
    "peft",
    "scipy",
    "segmentation-models-pytorch",
    "timm",
    "torchvision",
    "transformers",
)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`RESULT_LIBRARIES` (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in RESULT_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def per_condition(total: int, n_conditions: int) -> int:
    """Samples per condition so that ``n_conditions`` of them make at least ``total``."""
    return max(1, math.ceil(total / max(1, n_conditions)))


def default_dataset(config: RunConfig, registry: Registry) -> str:
    """The embedded toy set matching the task the chosen generator or selector needs (from the
    ``task`` they registered with): ``saadi run --generator ssi`` means segmentation data."""
    for slot in ("generator", "selector"):
        spec = getattr(config, slot)
        if (
            spec is not None
            and spec.kind is not None
            and registry.get(slot, spec.kind).task == "segmentation"
        ):
            return "toy-seg"
    return "toy-cls"


@dataclass
class RunResult:
    """What ``saadi run`` hands to the CLI: the store and ``summary.json``'s content."""

    store: RunStore
    config: RunConfig
    summary: dict[str, Any] = field(default_factory=dict)
    #: the held-out sample stages by variant ("base", "aligned"): a study mixes them across arms
    samples: dict[str, StageResult] = field(default_factory=dict)
    session: RunSession | None = None


class RunSession:
    """One execution of the loop: resolved config, registry, context and store."""

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        quiet: bool,
        doc: YamlDoc | None,
        stages_dir: Path | None = None,
        force_stages: Sequence[str] = (),
    ) -> None:
        from saadi_core import preflight
        from saadi_core.device import resolve_device
        from saadi_core.progress import RichProgress

        preflight.before_data(config)
        self.registry = registry
        #: every stage this session found or computed, by name (what summary plugins read)
        self.results: dict[str, StageResult] = {}
        #: stage names (or families such as ``sample``) to recompute even when cached
        self.force_stages = tuple(force_stages)
        self.forced_seen: set[str] = set()
        #: (category, kind) of the components each slot's options hold, for the stage keys
        self._held: dict[str, list[tuple[str, str]]] = {}
        self.progress = RichProgress(quiet=quiet or not distributed.is_main_process())
        if config.dataset.kind is None:
            config = config.model_copy(
                update={
                    "dataset": ComponentSpec(
                        kind=default_dataset(config, registry), options=config.dataset.options
                    )
                }
            )
        dataset_entry = registry.get("dataset", config.dataset.kind)
        self.progress.say(f"[bold]data[/]: building '{config.dataset.kind}' and checking it")
        self.dataset = dataset_entry.load()(
            dataset_entry.build_options(config.dataset.options, config.profile)
        )
        self.config = config.model_copy(update=self._task_defaults(config))
        self.options = validate_components(self.config, registry, doc)
        preflight.after_data(registry, self.config, self.dataset)
        self._seed_options()
        self.sizes = PROFILE_SIZES[self.config.profile]
        self.store = distributed.create_store(
            self.config.runs_dir,
            self.config.run_name(),
            self.config.model_dump(mode="json"),
            self._versions(),
            stages_dir,
        )
        from saadi_core.tracking import attach

        trackers = (
            self.config.log_with if distributed.is_main_process() else []
        )  # rank 0 reports the run
        self.tracker = attach(
            trackers, self.store, self.config.run_name(), self.config.model_dump(mode="json")
        )
        self.progress.sink = self.store.log_event
        device = resolve_device(self.config.device)
        self.context = RunContext(
            device=device,
            profile=self.config.profile,
            progress=self.progress,
            accelerator=distributed.run_accelerator(device),
        )
        self.store.update_manifest(
            seeds={"run": self.config.seed, "pool": self.pool_seed, "evaluation": self.eval_seed},
            dataset={
                "source": self.dataset.source,
                "task": self.dataset.task,
                "classes": self.dataset.class_names,
            },
        )

    # ------------------------------------------------------------------ set-up

    def _task_defaults(self, config: RunConfig) -> dict[str, Any]:
        """The components the config leaves open, filled in for the dataset's task."""
        defaults = TASK_DEFAULTS[self.dataset.task]
        updates: dict[str, Any] = {}
        for slot in ("generator", "selector"):
            spec = getattr(config, slot)
            if spec is None or spec.kind is None:
                updates[slot] = ComponentSpec(
                    kind=defaults[slot], options=spec.options if spec else {}
                )
        if config.pairing.kind is None:
            kind, options = defaults["pairing"]
            updates["pairing"] = ComponentSpec(
                kind=kind, options={**options, **config.pairing.options}
            )
        selector = updates.get("selector") or config.selector
        if config.downstream is None:
            updates["downstream"] = selector.model_copy(deep=True)
        elif config.downstream.kind is None:
            options = config.downstream.options if config.downstream.options else selector.options
            updates["downstream"] = ComponentSpec(kind=selector.kind, options=options)
        return updates

    def _seed_options(self) -> None:
        """Give every component that has a ``seed`` option the run seed, unless set explicitly,
        so ``--seed`` changes the whole run reproducibly."""
        for path, opts in list(self.options.items()):
            if path == "dataset":  # the real data stays the same across run seeds
                continue
            spec = getattr(self.config, path, None)
            if (
                "seed" in type(opts).model_fields
                and spec is not None
                and "seed" not in spec.options
            ):
                self.options[path] = opts.model_copy(update={"seed": self.config.seed})

    def _versions(self) -> dict[str, Any]:
        import torch

        plugins = {
            p.name: {"version": p.version, "status": p.status} for p in self.registry.plugins
        }
        return {
            "saadi": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "libraries": library_versions(),
            "plugins": plugins,
        }

    # ------------------------------------------------------------------ what stages share

    @property
    def pool_seed(self) -> int:
        return self.config.pool.seed + self.config.seed

    @property
    def eval_seed(self) -> int:
        return self.config.evaluation.seed + self.config.seed

    def create(self, slot: str) -> Any:
        """A fresh component for a config slot (``downstream`` is built from the selectors)."""
        category = "selector" if slot == "downstream" else slot
        spec: ComponentSpec = getattr(self.config, slot)
        return self.registry.get(category, spec.kind).create(
            self.options[slot], context=self.context
        )

    def params(self, slot: str) -> dict[str, Any]:
        """The cache-key part of a component: kind, validated options, profile and, when the
        component reads files of its own (:meth:`Component.cache_inputs`), their fingerprints."""
        spec: ComponentSpec = getattr(self.config, slot)
        params = {
            "kind": spec.kind,
            "options": self.options[slot].model_dump(mode="json"),
            "profile": self.config.profile,
        }
        inputs = self.create(slot).cache_inputs()
        return params | {"inputs": inputs} if inputs else params

    def stage(
        self,
        name: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any]],
        deps: Sequence[StageResult] = (),
        slots: Sequence[str] = (),
        hooks: Sequence[str] = (),
        kinds: Sequence[tuple[str, str]] = (),
    ) -> StageResult:
        """Find or compute one stage in the store, and say which it was. ``slots`` (config slots
        whose component it builds), ``kinds`` (other ``(category, kind)`` it uses) and ``hooks``
        (lifecycle hooks it calls) name the code that computes it: their plugins' versions are
        part of the key (:mod:`saadi_core.stages.keys`). ``--force-stage`` recomputes it."""
        from saadi_core.config import nested_kinds
        from saadi_core.stages.keys import CATEGORY, code_versions

        components = [(CATEGORY[slot], getattr(self.config, slot).kind) for slot in slots]
        for slot in slots:  # the parts of a sequence, the inner aligner of iterative, …
            if slot not in self._held:
                self._held[slot] = nested_kinds(
                    CATEGORY[slot], self.options[slot], self.registry, self.config.profile
                )
            components += self._held[slot]
        code = code_versions(self.registry, [*components, *kinds], hooks)
        started = time.perf_counter()
        force = self.forced(name)
        result = self.store.stage(
            name, params | {"code": code} | self.compute_key(), fn, deps, force=force
        )
        self.results[name] = result
        state = "cached" if result.cached else f"{time.perf_counter() - started:.1f} s"
        self.progress.say(f"[green]✓[/] {name} ({state})")
        return result

    def compute_key(self) -> dict[str, Any]:
        """With ``strict_keys``, what computes a stage besides its code: the torch thread count
        and the device. Float sums differ with either (a base trained with 2 threads instead of 1
        passed the oracle 2.7 points more often), so a strict run reuses only what it would
        recompute bit for bit. Empty otherwise, leaving every other key as it was."""
        if not self.config.strict_keys:
            return {}
        import torch

        return {
            "compute": {
                "torch_threads": torch.get_num_threads(),
                "device": str(self.context.device),
            }
        }

    def forced(self, name: str) -> bool:
        """Whether ``--force-stage`` names this stage (``sample`` names every ``sample-*``)."""
        hit = [f for f in self.force_stages if name == f or name.startswith(f + "-")]
        self.forced_seen.update(hit)
        return bool(hit)

    def threshold(self) -> float:
        """h of every pass rate: ``evaluation.threshold``, else the pairing's, else the task's
        default pairing's. The last matters for a pairing without an h (a preferences file): on
        segmentation the scores are Dice values around 0.8-0.95, and judging them at the
        classification h 0.5 made every sample pass validation."""
        if self.config.evaluation.threshold is not None:
            return self.config.evaluation.threshold
        default = TASK_DEFAULTS[self.dataset.task]["pairing"][1].get("threshold", 0.5)
        return float(getattr(self.options["pairing"], "threshold", default))

    def threshold_keyed_by_pairing(self) -> bool:
        """Whether h is the pairing's own option, and so part of the key of every stage after
        ``pair``; a stage that uses h otherwise must put it in its own key."""
        return self.config.evaluation.threshold is None and hasattr(
            self.options["pairing"], "threshold"
        )

    def warn(self, message: str) -> None:
        self.progress.say(f"[yellow]warning[/]: {message}")

    def load_generator(self, trained: StageResult) -> Generator:
        generator = self.create("generator")
        generator.load(trained.path / "model")
        return generator

    def load_selector(self, trained: StageResult) -> Selector:
        selector = self.create("selector")
        selector.load(trained.path / "model")
        return selector

    def aligned_generator(self, trained: StageResult, aligned: StageResult) -> Generator:
        """The trained generator with the ``align`` stage's adapters restored onto it."""
        aligner = self.create("aligner")
        return aligner.restore(self.load_generator(trained), aligned.path / "aligner")

    @staticmethod
    def scores(scored: StageResult) -> list[float]:
        """The ``score`` stage's per-sample selector scores (pool order)."""
        return json.loads((scored.path / "scores.json").read_text())["scores"]

    def pair_set(self, pool: StageResult, scored: StageResult, paired: StageResult) -> PairSet:
        """The ``pair`` stage's pairs as :class:`Pair` objects over the loaded pool."""
        from saadi_core.interfaces import Pair
        from saadi_core.samples_io import load_samples

        samples = load_samples(pool.path)
        scores = self.scores(scored)
        data = json.loads((paired.path / "pairs.json").read_text())
        pairs = [Pair(samples[w], samples[l], scores[w], scores[l]) for w, l in data["pairs"]]
        return PairSet(pairs=pairs, stats=data["stats"])

    def evaluate_model(self, model: Selector) -> dict[str, Any]:
        """F1 (classification) or Dice (segmentation) of a task model on the real test split."""
        import numpy as np
        import torch

        from saadi_core.evaluation.metrics import dice_scores, f1_scores

        test = self.dataset.test
        preds = []
        with torch.no_grad():
            for start in range(0, len(test), 64):
                preds.append(
                    model.predict(test.image_tensor(slice(start, start + 64))).cpu().numpy()
                )
        pred = np.concatenate(preds)
        if self.dataset.task == "classification":
            return f1_scores(pred, test.labels, self.dataset.class_names)
        return dice_scores(pred, test.masks, self.dataset.class_names)
