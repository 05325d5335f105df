"""The SAADi loop, wired from the interfaces only.

Stages (each cached and resumable in the run store, keyed by its options and upstream keys)::

    data ─┬─ train-generator ── generate-pool ─┐
          └─ train-selector ───────────────────┴─ score ── pair ── align ── evaluate ── downstream

* ``evaluate`` samples the base and the aligned generator from the SAME seeds and conditions,
  scores both with the selector (and the dataset's oracle on toy data) and tests the paired
  difference (exact McNemar) — this is the evidence that alignment changed what images show.
* ``downstream`` trains the downstream model on real, real + base synthetic and real + aligned
  synthetic (the evaluation samples, sized to ``scale × |train|``) and reports F1 or Dice on the
  real test split.

The pipeline never imports a plugin: components are built through the registry by kind.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from saadi_core import __version__, distributed
from saadi_core.config import ComponentSpec, RunConfig, YamlDoc, validate_components
from saadi_core.errors import PipelineError
from saadi_core.interfaces import AlignInputs, Generator, PairSet, RunContext, Sample, Selector
from saadi_core.registry import Registry
from saadi_core.store import RunStore, StageResult, atomic_write_json

#: components chosen when the config leaves them open, by dataset task
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {"generator": "ssd", "selector": "resnet18", "pairing": ("threshold", {})},
    # a segmenter's score is a Dice: on toy-seg SSI samples score 0.83-0.95, so the paper's h 0.5
    # leaves no losers; h 0.9 splits the pool (set pairing.options.threshold to change it)
    "segmentation": {"generator": "ssi", "selector": "segformer", "pairing": ("threshold", {"threshold": 0.9})},
}

#: profile defaults of the run-level sizes, as totals over all conditions (plugins hold their own
#: option defaults): a generator with 5 class conditions gets 128 pool samples per class in tiny,
#: one with 16 mask conditions 40 per mask — the CPU budget is the total, not the per-condition count
PROFILE_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"pool_size": 640, "validation_size": 80},
    "paper": {"pool_size": 3072, "validation_size": 320},
}


def per_condition(total: int, n_conditions: int) -> int:
    """Samples per condition so that ``n_conditions`` of them make at least ``total``."""
    return max(1, math.ceil(total / max(1, n_conditions)))

#: a selector whose pool scores vary less than this is treated as blind (METHOD.md lesson)
NEAR_CONSTANT_STD = 0.02


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
        self, config: RunConfig, registry: Registry, quiet: bool, doc: YamlDoc | None, stages_dir: Path | None = None
    ) -> None:
        from saadi_core.device import resolve_device
        from saadi_core.progress import RichProgress

        self.registry = registry
        self.progress = RichProgress(quiet=quiet or not distributed.is_main_process())
        if config.dataset.kind is None:
            config = config.model_copy(update={"dataset": ComponentSpec(kind=_default_dataset(config, registry), options=config.dataset.options)})
        dataset_entry = registry.get("dataset", config.dataset.kind)
        self.progress.say(f"[bold]data[/]: building '{config.dataset.kind}' and checking it")
        self.dataset = dataset_entry.load()(dataset_entry.build_options(config.dataset.options, config.profile))
        defaults = TASK_DEFAULTS[self.dataset.task]
        updates: dict[str, Any] = {}
        for slot in ("generator", "selector"):
            spec = getattr(config, slot)
            if spec is None or spec.kind is None:
                updates[slot] = ComponentSpec(kind=defaults[slot], options=spec.options if spec else {})
        if config.pairing.kind is None:
            kind, options = defaults["pairing"]
            updates["pairing"] = ComponentSpec(kind=kind, options={**options, **config.pairing.options})
        selector = updates.get("selector") or config.selector
        if config.downstream is None:
            updates["downstream"] = selector.model_copy(deep=True)
        elif config.downstream.kind is None:
            options = config.downstream.options if config.downstream.options else selector.options
            updates["downstream"] = ComponentSpec(kind=selector.kind, options=options)
        self.config = config.model_copy(update=updates)
        self.options = validate_components(self.config, registry, doc)
        self._seed_options()
        self.sizes = PROFILE_SIZES[self.config.profile]
        self.store = distributed.create_store(
            self.config.runs_dir, self.config.run_name(), self.config.model_dump(mode="json"), self._versions(), stages_dir
        )
        self.progress.sink = self.store.log_event
        device = resolve_device(self.config.device)
        self.context = RunContext(
            device=device, profile=self.config.profile, progress=self.progress, accelerator=distributed.run_accelerator(device)
        )
        self.store.update_manifest(
            seeds={"run": self.config.seed, "pool": self.pool_seed, "evaluation": self.eval_seed},
            dataset={"source": self.dataset.source, "task": self.dataset.task, "classes": self.dataset.class_names},
        )

    # ------------------------------------------------------------------ set-up helpers

    @property
    def pool_seed(self) -> int:
        return self.config.pool.seed + self.config.seed

    @property
    def eval_seed(self) -> int:
        return self.config.evaluation.seed + self.config.seed

    def _seed_options(self) -> None:
        """Give every component that has a ``seed`` option the run seed, unless set explicitly,
        so ``--seed`` changes the whole run reproducibly."""
        for path, opts in list(self.options.items()):
            if path == "dataset":  # the real data stays the same across run seeds
                continue
            spec = getattr(self.config, path, None)
            if "seed" in type(opts).model_fields and spec is not None and "seed" not in spec.options:
                self.options[path] = opts.model_copy(update={"seed": self.config.seed})

    def _versions(self) -> dict[str, Any]:
        import torch

        plugins = {p.name: {"version": p.version, "status": p.status} for p in self.registry.plugins}
        return {"saadi": __version__, "python": platform.python_version(), "torch": torch.__version__, "plugins": plugins}

    def _create(self, slot: str) -> Any:
        category = "selector" if slot == "downstream" else slot
        spec: ComponentSpec = getattr(self.config, slot)
        return self.registry.get(category, spec.kind).create(self.options[slot], context=self.context)

    def _params(self, slot: str) -> dict[str, Any]:
        spec: ComponentSpec = getattr(self.config, slot)
        return {"kind": spec.kind, "options": self.options[slot].model_dump(mode="json"), "profile": self.config.profile}

    # ------------------------------------------------------------------ stages

    def stage_data(self) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            summary = {
                "source": self.dataset.source,
                "task": self.dataset.task,
                "classes": self.dataset.class_names,
                "train": len(self.dataset.train),
                "test": len(self.dataset.test),
                "image_size": self.dataset.image_size,
                "train_counts": self.dataset.class_counts("train"),
            }
            atomic_write_json(out / "dataset.json", summary)
            return summary

        return self._stage("data", {"dataset": self.config.dataset.model_dump(mode="json"), "profile": self.config.profile}, compute)

    def load_generator(self, trained: StageResult) -> Generator:
        generator = self._create("generator")
        generator.load(trained.path / "model")
        return generator

    def load_selector(self, trained: StageResult) -> Selector:
        selector = self._create("selector")
        selector.load(trained.path / "model")
        return selector

    def stage_train_generator(self, data: StageResult) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            generator = self._create("generator")
            generator.fit(self.dataset)
            generator.save(out / "model")
            return {"kind": generator.kind}

        return self._stage("train-generator", self._params("generator"), compute, [data])

    def stage_generate_pool(self, trained: StageResult, selector_stage: StageResult) -> StageResult:
        pool = self.config.pool
        fixed = pool.n_per_condition

        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.samples_io import save_samples

            generator = self.load_generator(trained)
            conditions = generator.conditions(self.dataset)
            n = fixed or per_condition(self.sizes["pool_size"], len(conditions))
            samples = distributed.sample(generator, conditions, n, self.pool_seed)
            outputs: dict[str, Any] = {"n_conditions": len(conditions), "n_per_condition": n}
            if pool.min_winners:
                extra, outputs["adaptive"] = self._top_up(generator, conditions, samples, n, self.load_selector(selector_stage))
                samples = [*samples, *extra]
            save_samples(out, samples)
            return outputs | {"n_samples": len(samples)}

        params = {"n_per_condition": fixed, "pool_size": None if fixed else self.sizes["pool_size"], "seed": self.pool_seed}
        if pool.min_winners:  # only the adaptive pool depends on the selector
            params |= {"min_winners": pool.min_winners, "max_per_condition": pool.max_per_condition}
            return self._stage("generate-pool", params, compute, [trained, selector_stage])
        return self._stage("generate-pool", params, compute, [trained])

    def _top_up(
        self, generator: Generator, conditions: Sequence[Any], samples: Sequence[Sample], n: int, selector: Selector
    ) -> tuple[list[Sample], dict[str, Any]]:
        """Adaptive pool (METHOD lesson "rare classes had no winners"): sample more for every
        condition with fewer than ``min_winners`` winners or losers, in rounds of ``n`` per
        condition from fresh seeds, until it has them or reaches the cap."""
        k = self.config.pool.min_winners
        cap = self.config.pool.max_per_condition or 4 * n
        threshold = self._threshold()
        counts = {c.id: [0, 0, 0] for c in conditions}  # samples, winners, losers
        extra: list[Sample] = []

        def count(batch: Sequence[Sample]) -> None:
            for sample, score in zip(batch, selector.score(batch)):
                entry = counts[sample.condition.id]
                entry[0] += 1
                entry[1 if score >= threshold else 2] += 1

        count(samples)
        for round_ in range(1, cap):
            short = [c for c in conditions if min(counts[c.id][1:]) < k and counts[c.id][0] < cap]
            if not short:
                break
            step = min(n, cap - min(counts[c.id][0] for c in short))
            batch = generator.sample(short, step, self.pool_seed + 7919 * round_)
            batch = [s for s in batch if counts[s.condition.id][0] + s.index < cap]
            count(batch)
            extra.extend(batch)
            self.progress.say(f"[bold]pool[/]: round {round_}: +{len(batch)} samples for {len(short)} condition(s) short of {k} winners/losers")
        lacking = [c.id for c in conditions if min(counts[c.id][1:]) < k]
        summary = {
            "min_winners": k,
            "cap_per_condition": cap,
            "added": len(extra),
            "per_condition": {cid: {"samples": v[0], "winners": v[1], "losers": v[2]} for cid, v in counts.items()},
            "still_short": lacking,
        }
        return extra, summary

    def stage_train_selector(self, data: StageResult) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            selector = self._create("selector")
            selector.fit(self.dataset)
            selector.save(out / "model")
            return {"test": self._evaluate_model(selector)}

        return self._stage("train-selector", self._params("selector"), compute, [data])

    def stage_score(self, pool: StageResult, selector_stage: StageResult) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.samples_io import load_samples

            samples = load_samples(pool.path)
            scores = self.load_selector(selector_stage).score(samples)
            atomic_write_json(out / "scores.json", {"scores": scores})
            return self._diagnose(samples, scores)

        return self._stage("score", {}, compute, [pool, selector_stage])

    def stage_pair(self, pool: StageResult, scored: StageResult) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.samples_io import load_samples

            samples = load_samples(pool.path)
            scores = self._scores(scored)
            pairing = self._create("pairing")
            pair_set = pairing.pairs(samples, scores, seed=self.config.seed)
            index = {id(s): i for i, s in enumerate(samples)}
            atomic_write_json(
                out / "pairs.json",
                {"pairs": [[index[id(p.winner)], index[id(p.loser)]] for p in pair_set.pairs], "stats": pair_set.stats},
            )
            return {k: v for k, v in pair_set.stats.items() if not isinstance(v, list)} | {
                "conditions_without_winner": len(pair_set.stats.get("conditions_without_winner", [])),
                "conditions_without_loser": len(pair_set.stats.get("conditions_without_loser", [])),
            }

        return self._stage("pair", self._params("pairing") | {"seed": self.config.seed}, compute, [pool, scored])

    def stage_align(self, trained: StageResult, pool: StageResult, scored: StageResult, paired: StageResult, selector_stage: StageResult) -> StageResult:
        def compute(out: Path) -> dict[str, Any]:
            pair_set = self._pair_set(pool, scored, paired)
            if not pair_set.pairs:
                stats = pair_set.stats
                constant = scored.outputs.get("std") is not None and scored.outputs["std"] < NEAR_CONSTANT_STD
                raise PipelineError(
                    (f"the selector gave near-constant scores (std {scored.outputs['std']:.3f}), so " if constant else "")
                    + "no preference pairs were found "
                    f"({len(stats.get('conditions_without_winner', []))} condition(s) without a winner, "
                    f"{len(stats.get('conditions_without_loser', []))} without a loser); "
                    "change the threshold h (--set pairing.options.threshold=…), enlarge the pool "
                    "(--set pool.n_per_condition=…) or train the generator longer"
                )
            from saadi_core.samples_io import load_samples

            generator = self.load_generator(trained)
            selector = self.load_selector(selector_stage)
            aligner = self._create("aligner")
            inputs = AlignInputs(
                pairs=pair_set,
                dataset=self.dataset,
                pool=load_samples(pool.path),
                scores=self._scores(scored),
                selector=selector,
                pairing=self._create("pairing"),
                new_selector=lambda: self._create("selector"),
                validate=self._validator(selector),
                seed=self.config.seed,
            )
            work = out / "work"
            work.mkdir()
            result = aligner.align(generator, inputs, work)
            aligner.save(result, out / "aligner")
            atomic_write_json(out / "history.json", {"history": result.history, "meta": result.meta})
            last = next((h for h in reversed(result.history) if "implicit_accuracy" in h), {})
            return {"steps": len(result.history), "implicit_accuracy": last.get("implicit_accuracy"), "meta": result.meta}

        return self._stage("align", self._params("aligner"), compute, [trained, paired, selector_stage])

    def stage_sample(self, variant: str, trained: StageResult, aligned: StageResult | None = None) -> StageResult:
        """The base or aligned generator's held-out samples: the SAME seed and conditions for
        both, sized for the largest downstream scale (a smaller scale takes a balanced prefix).
        Base samples depend on the trained generator only, so a study's base arm and aligned
        arm of one generator share them."""
        n_train = len(self.dataset.train)

        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.samples_io import save_samples

            generator = self.load_generator(trained) if aligned is None else self._aligned(trained, aligned)
            conditions = generator.conditions(self.dataset)
            n = max(self.config.evaluation.n_per_condition or 0, math.ceil(max(self.config.evaluation.scales) * n_train / len(conditions)))
            samples = distributed.sample(generator, conditions, n, self.eval_seed)
            save_samples(out, samples)
            return {"n_per_condition": n, "n_samples": len(samples), "seed": self.eval_seed}

        params = {"n_per_condition": self.config.evaluation.n_per_condition, "max_scale": max(self.config.evaluation.scales), "seed": self.eval_seed}
        deps = [trained] if aligned is None else [trained, aligned]
        return self._stage(f"sample-{variant}", params, compute, deps)

    def stage_evaluate(self, samples: dict[str, StageResult], selector_stage: StageResult) -> StageResult:
        """Selector (and oracle) pass rates of each variant; with an aligned variant, the paired
        base-vs-aligned test (exact McNemar) — the evidence that alignment changed the images."""
        threshold = self._threshold()

        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.evaluation.stats import mcnemar_exact
            from saadi_core.samples_io import SAMPLES_FILE, load_samples

            selector = self.load_selector(selector_stage)
            results: dict[str, Any] = {"seed": self.eval_seed}
            passes: dict[str, dict[str, Any]] = {}
            label_counts: dict[str, Any] = {}
            loaded_by_variant: dict[str, list[Sample]] = {}
            for variant, stage in samples.items():
                (out / variant).mkdir()
                _link_or_copy(stage.path / SAMPLES_FILE, out / variant / SAMPLES_FILE)
                loaded = loaded_by_variant[variant] = load_samples(stage.path)
                scores = selector.score(loaded)
                passes[variant] = {"selector": [s >= threshold for s in scores], "oracle": oracle_pass(self.dataset, loaded)}
                # per-sample record (same order as samples.pt): report histograms and grids
                atomic_write_json(out / variant / "scores.json", {"scores": scores, "threshold": threshold} | passes[variant])
                oracle = passes[variant]["oracle"]
                results[variant] = {
                    "n": len(scores),
                    "mean_score": sum(scores) / len(scores),
                    "selector_rate": sum(passes[variant]["selector"]) / len(scores),
                    "oracle_rate": None if oracle is None else sum(oracle) / len(oracle),
                }
                if self.dataset.task == "segmentation" and all(s.mask is not None for s in loaded):
                    label_counts[variant] = self._label_counts(selector, loaded)
            if "aligned" in passes:
                results["selector_pass"] = mcnemar_exact(passes["base"]["selector"], passes["aligned"]["selector"])
                if passes["base"]["oracle"] is not None:
                    results["oracle_pass"] = mcnemar_exact(passes["base"]["oracle"], passes["aligned"]["oracle"])
            if self.dataset.task == "segmentation":
                results["class_presence"], warnings = self._class_presence(loaded_by_variant)
                results["warnings"] = warnings
            if label_counts:
                groups = paired_groups(loaded_by_variant["base"], loaded_by_variant["aligned"]) if "aligned" in label_counts else None
                results["label_preservation"] = self._label_preservation(label_counts, groups)
            return results

        return self._stage("evaluate", {"threshold": threshold}, compute, [*samples.values(), selector_stage])

    def _label_counts(self, selector: Selector, samples: Sequence[Sample], batch_size: int = 64) -> Any:
        """Per sample, the pixel counts ``(N, 3, K)`` (:func:`~saadi_core.evaluation.metrics.iou_counts`)
        of the selector's prediction against the mask the sample carries."""
        import numpy as np
        import torch

        from saadi_core.evaluation.metrics import iou_counts

        k = self.dataset.num_classes
        counts = []
        with torch.no_grad():
            for start in range(0, len(samples), batch_size):
                batch = samples[start : start + batch_size]
                predicted = selector.predict(torch.stack([s.image for s in batch])).cpu().numpy()
                counts += [iou_counts(pred, s.mask.numpy(), k) for s, pred in zip(batch, predicted)]  # type: ignore[union-attr]
        return np.stack(counts)

    def _label_preservation(self, label_counts: dict[str, Any], groups: Any = None) -> dict[str, Any]:
        """How well each variant's images still show the masks they carry, in the run selector's
        eyes: mIoU over the classes the masks show (with and without background) and per class —
        SimuScope's label-preservation metric, meaningful for any generator whose samples carry a
        mask. With ``groups`` (:func:`paired_groups` of base and aligned), aligned − base with a
        paired bootstrap interval (:func:`~saadi_core.evaluation.stats.paired_bootstrap`)."""
        from saadi_core.evaluation.metrics import mean_iou
        from saadi_core.evaluation.stats import paired_bootstrap

        names = self.dataset.class_names
        result: dict[str, Any] = {}
        for variant, counts in label_counts.items():
            miou, per_class = mean_iou(counts)
            result[variant] = {
                "miou": miou,
                "miou_foreground": mean_iou(counts, exclude=[0])[0],
                "per_class_iou": {names[c]: v for c, v in per_class.items()},
            }
        if groups is not None:
            base, aligned = label_counts["base"], label_counts["aligned"]
            result["change"] = paired_bootstrap(
                groups, lambda rows: mean_iou(base[rows])[0], lambda rows: mean_iou(aligned[rows])[0], seed=self.eval_seed
            )
        return result

    def _class_presence(self, samples: dict[str, list[Sample]]) -> tuple[dict[str, dict[str, float]], list[str]]:
        """Class presence of real training masks and of each variant's samples, with a warning per
        class alignment dropped (see :func:`saadi_core.evaluation.metrics.presence_drops`)."""
        from saadi_core.evaluation.metrics import class_presence, presence_drops

        names = self.dataset.class_names
        presence = {"real": class_presence(self.dataset.train.masks, names)}
        for variant, loaded in samples.items():
            masks = [s.mask.numpy() for s in loaded if s.mask is not None]
            if masks:
                presence[variant] = class_presence(masks, names)
        warnings = presence_drops(presence)
        for warning in warnings:
            self.progress.say(f"[yellow]warning[/]: {warning}")
        return presence, warnings

    def stage_fidelity(self, variant: str, samples: StageResult, selector_stage: StageResult) -> StageResult:
        """Fidelity metrics of one variant's held-out samples against the real training images
        (registered ``metric`` plugins). Features come from local Inception weights when given,
        else from the trained selector's backbone — labelled so, since that FID is not comparable
        with published Inception FID. A selector without features and no weights: a note only."""
        fidelity = self.config.fidelity

        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.evaluation.fidelity import compute_fidelity
            from saadi_core.samples_io import load_samples

            features, problem = self._feature_extractor(selector_stage)
            if features is None:
                result: dict[str, Any] = {"variants": {}, "memorisation": {}, "notes": [f"not computed: {problem}"]}
            else:
                result = compute_fidelity(
                    self.registry, {variant: self._fidelity_inputs(load_samples(samples.path), features)},
                    kinds=fidelity.metrics, profile=self.config.profile, options=fidelity.options, progress=self.progress,
                )
            atomic_write_json(out / "fidelity.json", result)
            headline = result.get("variants", {}).get(variant, {})
            return {k: headline[k] for k in ("fid", "kid_mean", "kid_std", "psnr", "ms_ssim", "diversity_ms_ssim") if k in headline}

        return self._stage(f"fidelity-{variant}", self._fidelity_params(), compute, [samples, selector_stage])

    def stage_fidelity_compare(self, samples: dict[str, StageResult], selector_stage: StageResult) -> StageResult:
        """Aligned − base of the metrics that implement ``compare`` (FID, KID), with paired
        bootstrap intervals over conditions: base and aligned samples share seeds and conditions,
        so a fidelity difference is reported with its significance like the pass rates."""
        fidelity = self.config.fidelity

        def compute(out: Path) -> dict[str, Any]:
            from saadi_core.evaluation.fidelity import compare_fidelity
            from saadi_core.samples_io import load_samples

            features, problem = self._feature_extractor(selector_stage)
            if features is None:
                return {"comparison": {}, "notes": [f"not compared: {problem}"]}
            base, aligned = (load_samples(samples[v].path) for v in ("base", "aligned"))
            groups = paired_groups(base, aligned)
            if groups is None:
                return {"comparison": {}, "notes": ["not compared: base and aligned samples are not paired by condition and index"]}
            return compare_fidelity(
                self.registry, self._fidelity_inputs(base, features), self._fidelity_inputs(aligned, features), groups,
                kinds=fidelity.metrics, profile=self.config.profile, options=fidelity.options,
            )

        return self._stage("fidelity-compare", self._fidelity_params(), compute, [samples["base"], samples["aligned"], selector_stage])

    def _fidelity_params(self) -> dict[str, Any]:
        return self.config.fidelity.model_dump(mode="json") | {"profile": self.config.profile, "selector_features": "standardised"}

    def _feature_extractor(self, selector_stage: StageResult) -> tuple[Any, str | None]:
        """``(extractor, None)``: local Inception weights when given (their errors are fatal),
        else the selector's standardised features; ``(None, why)`` when the selector has none."""
        from saadi_core.errors import ConfigError
        from saadi_core.evaluation.fidelity import inception_features, selector_features

        weights = self.config.fidelity.inception_weights
        if weights is not None:
            return inception_features(weights, device=self.context.device), None
        try:
            return selector_features(self.load_selector(selector_stage), standardise_on=self.dataset.train.image_tensor()), None
        except ConfigError as exc:
            return None, str(exc)

    def _fidelity_inputs(self, loaded: Sequence[Sample], features: Any) -> Any:
        """One variant's samples against the real training images, with masks for segmentation
        and the condition's image (SSI: the inpainted source; SimuScope: the simulator frame) as
        the paired reference when every sample has one."""
        import torch

        from saadi_core.evaluation.fidelity import FidelityInputs

        train = self.dataset.train
        segmentation = self.dataset.task == "segmentation"
        controls = [s.condition.control for s in loaded]
        return FidelityInputs(
            real=train.image_tensor(),
            synthetic=torch.stack([s.image for s in loaded]),
            class_names=list(self.dataset.class_names),
            features=features,
            real_masks=torch.as_tensor(train.masks) if segmentation else None,
            synthetic_masks=torch.stack([s.mask if s.mask is not None else s.condition.mask for s in loaded]) if segmentation else None,
            reference=torch.stack(controls) if all(c is not None for c in controls) else None,
        )

    def fidelity(self, samples: dict[str, StageResult], selector_stage: StageResult) -> dict[str, Any]:
        """Every variant's fidelity stage and, with base and aligned, their comparison, merged
        into the run's ``fidelity.json``."""
        merged: dict[str, Any] = {"variants": {}, "memorisation": {}, "notes": []}
        for variant, stage in samples.items():
            result = json.loads((self.stage_fidelity(variant, stage, selector_stage).path / "fidelity.json").read_text())
            merged.setdefault("feature_extractor", result.get("feature_extractor"))
            for section in ("variants", "memorisation"):
                merged[section].update(result.get(section, {}))
            merged["notes"].extend(n for n in result.get("notes", []) if n not in merged["notes"])
        if "base" in samples and "aligned" in samples:
            compared = self.stage_fidelity_compare(samples, selector_stage).outputs
            merged["comparison"] = compared.get("comparison", {})
            merged["notes"].extend(compared.get("notes", []))
        atomic_write_json(self.store.root / "fidelity.json", merged)
        return merged

    def stage_downstream(
        self, data: StageResult, label: str, sources: Sequence[StageResult], scale: float, seed: int, selector_stage: StageResult
    ) -> StageResult:
        """One downstream model: trained on real data plus ``scale × |train|`` synthetic samples
        drawn equally from ``sources`` (one for base or aligned, several for a study's mix),
        evaluated on the real test split. Real-only (no sources) has the same key in every arm
        of a study, so it is trained once per seed."""
        reuse = not sources and self._selector_is_downstream(seed)

        def compute(out: Path) -> dict[str, Any]:
            if reuse:
                # same kind, options and seed on the same real data: the selector's test result
                # is this model's (training is deterministic per seed)
                self.progress.say(f"[bold]downstream[/]: real (seed {seed}) = the trained selector")
                return {"metrics": selector_stage.outputs["test"], "n_synthetic": 0, "reused": "train-selector"}
            extra = self._synthetic(sources, scale)
            self.progress.say(f"[bold]downstream[/]: {_variant_key(label, scale, bool(sources))} (seed {seed}, {len(extra)} synthetic)")
            model = self._create("downstream")
            if "seed" in type(model.options).model_fields:
                model.options = model.options.model_copy(update={"seed": seed})
            model.fit(self.dataset, extra=extra)
            return {"metrics": self._evaluate_model(model), "n_synthetic": len(extra)}

        params = self._params("downstream") | {"seed": seed, "scale": scale if sources else None}
        deps = [data, *sources, *([selector_stage] if reuse else [])]
        name = f"downstream-{label}" + (f"-{scale:g}x" if sources else "") + f"-s{seed}"
        return self._stage(name, params, compute, deps)

    def downstream(
        self, data: StageResult, synthetic: dict[str, Sequence[StageResult]], selector_stage: StageResult
    ) -> dict[str, dict[str, Any]]:
        """Real-only and every synthetic set at every scale, for every downstream seed:
        ``{seed: {"real" | "real+<label>@<scale>x": metrics}}`` (also written to the run's
        ``downstream.json``)."""
        results: dict[str, dict[str, Any]] = {}
        for seed in self.config.evaluation.downstream_seeds:
            by_variant = results.setdefault(str(seed), {})
            by_variant["real"] = self.stage_downstream(data, "real", (), 1.0, seed, selector_stage).outputs["metrics"]
            for scale in self.config.evaluation.scales:
                for label, sources in synthetic.items():
                    stage = self.stage_downstream(data, label, sources, scale, seed, selector_stage)
                    by_variant[_variant_key(label, scale, True)] = stage.outputs["metrics"]
        atomic_write_json(self.store.root / "downstream.json", results)
        return results

    def _selector_is_downstream(self, seed: int) -> bool:
        """Whether training the downstream model with ``seed`` on the real data alone repeats
        the train-selector stage."""
        options = self.options["downstream"]
        if "seed" in type(options).model_fields:
            options = options.model_copy(update={"seed": seed})
        return self.config.downstream.kind == self.config.selector.kind and options == self.options["selector"]

    def _synthetic(self, sources: Sequence[StageResult], scale: float) -> list[Sample]:
        """``scale × |train|`` samples, an equal share from each source, balanced over conditions."""
        from saadi_core.samples_io import load_samples

        total = int(round(scale * len(self.dataset.train)))
        chosen: list[Sample] = []
        for i, source in enumerate(sources):
            share = total // len(sources) + (1 if i < total % len(sources) else 0)
            chosen.extend(_balanced_subset(load_samples(source.path), share))
        return chosen

    # ------------------------------------------------------------------ helpers

    def _stage(self, name: str, params: dict[str, Any], fn: Any, deps: Sequence[StageResult] = ()) -> StageResult:
        started = time.perf_counter()
        result = self.store.stage(name, params, fn, deps)
        state = "cached" if result.cached else f"{time.perf_counter() - started:.1f} s"
        self.progress.say(f"[green]✓[/] {name} ({state})")
        return result

    def _threshold(self) -> float:
        """h of every pass rate: ``evaluation.threshold``, else the pairing's (0.5 without one)."""
        if self.config.evaluation.threshold is not None:
            return self.config.evaluation.threshold
        return float(getattr(self.options["pairing"], "threshold", 0.5))

    def _scores(self, scored: StageResult) -> list[float]:
        return json.loads((scored.path / "scores.json").read_text())["scores"]

    def _pair_set(self, pool: StageResult, scored: StageResult, paired: StageResult) -> PairSet:
        from saadi_core.interfaces import Pair
        from saadi_core.samples_io import load_samples

        samples = load_samples(pool.path)
        scores = self._scores(scored)
        data = json.loads((paired.path / "pairs.json").read_text())
        pairs = [Pair(samples[w], samples[l], scores[w], scores[l]) for w, l in data["pairs"]]
        return PairSet(pairs=pairs, stats=data["stats"])

    def _aligned(self, trained: StageResult, aligned: StageResult) -> Generator:
        aligner = self._create("aligner")
        return aligner.restore(self.load_generator(trained), aligned.path / "aligner")

    def _validator(self, selector: Selector) -> Any:
        """Held-out validation for the aligner: fixed seeds (disjoint from pool and evaluation),
        selector pass rate and, on toy data, oracle pass rate."""
        seed = self.eval_seed + 10_000
        threshold = self._threshold()

        def validate(generator: Generator) -> dict[str, float]:
            conditions = generator.conditions(self.dataset)
            samples = generator.sample(conditions, per_condition(self.sizes["validation_size"], len(conditions)), seed)
            scores = selector.score(samples)
            metrics = {"selector_pass": sum(s >= threshold for s in scores) / len(scores), "mean_score": sum(scores) / len(scores)}
            oracle = oracle_pass(self.dataset, samples)
            if oracle is not None:
                metrics["oracle_pass"] = sum(oracle) / len(oracle)
            return metrics

        return validate

    def _diagnose(self, samples: Sequence[Sample], scores: Sequence[float]) -> dict[str, Any]:
        """Score statistics and warnings before any pairing (a blind selector gives no signal)."""
        import numpy as np

        values = np.asarray(scores, dtype=float)
        h = self._threshold()
        diag: dict[str, Any] = {
            "n": int(values.size),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "share_below_h": float(np.mean(values < h)),
            "warnings": [],
        }
        if values.std() < NEAR_CONSTANT_STD:
            diag["warnings"].append(
                f"selector scores are near-constant (std {values.std():.3f}): it cannot tell good from bad samples; "
                "use a stronger selector or check that classes are not separable by a trivial cue"
            )
        if diag["share_below_h"] < 0.05 or diag["share_below_h"] > 0.95:
            diag["warnings"].append(f"{diag['share_below_h']:.0%} of the pool is below h={h}: few pairs; adjust h or the pool size")
        per_condition: dict[str, dict[str, Any]] = {}
        for sample, value in zip(samples, values):
            per_condition.setdefault(sample.condition.id, []).append(float(value))  # type: ignore[arg-type]
        for cid, group in list(per_condition.items()):
            arr = np.asarray(group)
            per_condition[cid] = {
                "n": int(arr.size), "mean": float(arr.mean()), "std": float(arr.std()),
                "winners": int(np.sum(arr >= h)), "losers": int(np.sum(arr < h)),
            }
        diag["per_condition"] = per_condition
        one_sided = sorted(cid for cid, c in per_condition.items() if not c["winners"] or not c["losers"])
        if one_sided:
            diag["warnings"].append(
                f"{len(one_sided)} of {len(per_condition)} condition(s) have no winner or no loser "
                f"(e.g. {one_sided[0]}): they give no pairs; enlarge the pool or use the adaptive pool (pool.min_winners)"
            )
        oracle = oracle_pass(self.dataset, samples)
        if oracle is not None:
            selector_pass = values >= h
            truth = np.asarray(oracle, dtype=bool)
            diag["oracle_pass"] = float(np.mean(truth))
            diag["selector_oracle_agreement"] = float(np.mean(selector_pass == truth))
            diag["selector_oracle_kappa"] = _cohen_kappa(selector_pass, truth)
            if diag["selector_oracle_kappa"] < 0.2:
                diag["warnings"].append(
                    f"the selector barely agrees with the oracle on the pool (Cohen's kappa {diag['selector_oracle_kappa']:.2f}): "
                    "its preferences may not be what the images really show; alignment can then drift without helping"
                )
        for warning in diag["warnings"]:
            self.progress.say(f"[yellow]warning[/]: {warning}")
        return diag

    def _evaluate_model(self, model: Selector) -> dict[str, Any]:
        import numpy as np
        import torch

        from saadi_core.evaluation.metrics import dice_scores, f1_scores

        test = self.dataset.test
        preds = []
        with torch.no_grad():
            for start in range(0, len(test), 64):
                preds.append(model.predict(test.image_tensor(slice(start, start + 64))).cpu().numpy())
        pred = np.concatenate(preds)
        if self.dataset.task == "classification":
            return f1_scores(pred, test.labels, self.dataset.class_names)
        return dice_scores(pred, test.masks, self.dataset.class_names)


def paired_groups(base: Sequence[Sample], aligned: Sequence[Sample]) -> Any:
    """The condition index ``(N,)`` of each sample when base and aligned are paired sample by
    sample (same condition and index, same order — the sample stages guarantee it), else
    ``None``: the grouping every paired bootstrap of the two variants resamples."""
    import numpy as np

    keys = [(s.condition.id, s.index) for s in base]
    if keys != [(s.condition.id, s.index) for s in aligned]:
        return None
    ids = {c: k for k, c in enumerate(dict.fromkeys(c for c, _ in keys))}
    return np.array([ids[c] for c, _ in keys])


def oracle_pass(dataset: Any, samples: Sequence[Sample]) -> list[bool] | None:
    """The dataset oracle's verdict on each sample (does the image show its class, or its mask?);
    ``None`` for a dataset without an oracle (real data)."""
    oracle = dataset.oracle
    if oracle is None:
        return None
    import numpy as np
    import torch

    from saadi_core.samples_io import to_uint8_nhwc

    images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
    if dataset.task == "classification":
        labels = np.array([s.condition.class_id for s in samples], dtype=np.int64)
        return [bool(v) for v in oracle.check(images, labels=labels)]
    masks = torch.stack([s.mask for s in samples]).numpy()
    return [bool(v) for v in oracle.check(images, masks=masks)]


def _default_dataset(config: RunConfig, registry: Registry) -> str:
    """The embedded toy set matching the task the chosen generator or selector needs (from the
    ``task`` they registered with): ``saadi run --generator ssi`` means segmentation data."""
    for slot in ("generator", "selector"):
        spec = getattr(config, slot)
        if spec is not None and spec.kind is not None and registry.get(slot, spec.kind).task == "segmentation":
            return "toy-seg"
    return "toy-cls"


def _balanced_subset(samples: Sequence[Sample], n: int) -> list[Sample]:
    """``n`` samples taking the same number from every condition (round-robin by index), so a
    smaller scale is a prefix of a larger one and every class is represented."""
    by_condition: dict[str, list[Sample]] = {}
    for s in samples:
        by_condition.setdefault(s.condition.id, []).append(s)
    ordered: list[Sample] = []
    depth = max((len(group) for group in by_condition.values()), default=0)
    for i in range(depth):
        ordered.extend(group[i] for group in by_condition.values() if i < len(group))
    return ordered[:n]


def _aggregate(results: dict[str, dict[str, Any]], task: str) -> dict[str, Any]:
    """Mean ± std over downstream seeds of the headline metric per training set, and for every
    synthetic set the paired difference to real-only (same seed) with its 95 % t interval."""
    import numpy as np

    from saadi_core.evaluation.stats import interval_verdict, paired_interval

    metric = "macro_f1" if task == "classification" else "mean_dice"
    variants = sorted({k for by_variant in results.values() for k in by_variant})
    out: dict[str, Any] = {"metric": metric}
    for variant in variants:
        values = [r[variant][metric] for r in results.values() if variant in r]
        out[variant] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n_seeds": len(values)}
        if variant != "real":
            differences = [r[variant][metric] - r["real"][metric] for r in results.values() if variant in r and "real" in r]
            interval = paired_interval(differences)
            out[variant]["vs_real"] = {
                "difference": float(np.mean(differences)),
                "ci95": list(interval) if interval else None,
                "verdict": interval_verdict(interval),
            }
    return out


def _cohen_kappa(a: Any, b: Any) -> float:
    """Cohen's kappa of two boolean vectors: agreement beyond what their pass rates give by chance
    (accuracy alone looks high when both say "pass" to almost everything)."""
    import numpy as np

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return 0.0 if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def _variant_key(label: str, scale: float, synthetic: bool) -> str:
    """How a downstream training set is named in results: ``real`` or ``real+base@1x``."""
    return f"real+{label}@{scale:g}x" if synthetic else "real"


def _link_or_copy(source: Path, target: Path) -> None:
    """Make a finished stage's file visible in another stage without duplicating its bytes."""
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run_pipeline(
    config: RunConfig,
    registry: Registry,
    quiet: bool = False,
    doc: YamlDoc | None = None,
    stages_dir: Path | None = None,
) -> RunResult:
    """Run (or resume) every stage and write ``summary.json`` into the run directory.

    Without an aligner (``config.aligner`` is ``None``) the loop stops at the base generator's
    samples: no pool, scoring, pairing or alignment. ``stages_dir`` shares stage results with
    other runs (see :meth:`RunStore.create`)."""
    run = RunSession(config, registry, quiet, doc, stages_dir=stages_dir)
    run.progress.say(f"[bold]run[/] {run.store.root} (profile {run.config.profile}, device {run.context.device})")
    data = run.stage_data()
    trained = run.stage_train_generator(data)
    selector_stage = run.stage_train_selector(data)
    samples = {"base": run.stage_sample("base", trained)}
    summary: dict[str, Any] = {
        "run": str(run.store.root),
        "task": run.dataset.task,
        "components": {k: v.kind for k, v in run.config.components().items()},
        "selector_test": selector_stage.outputs.get("test"),
    }
    if run.config.aligner is not None:
        pool = run.stage_generate_pool(trained, selector_stage)
        scored = run.stage_score(pool, selector_stage)
        paired = run.stage_pair(pool, scored)
        aligned = run.stage_align(trained, pool, scored, paired, selector_stage)
        samples["aligned"] = run.stage_sample("aligned", trained, aligned)
        summary |= {
            "score_diagnostics": scored.outputs,
            "pairs": paired.outputs,
            "dpo_implicit_accuracy": aligned.outputs.get("implicit_accuracy"),
            "alignment": aligned.outputs.get("meta"),
        }
    evaluated = run.stage_evaluate(samples, selector_stage)
    fidelity = run.fidelity(samples, selector_stage) if run.config.fidelity.metrics != [] else None
    variants = [v for v in run.config.evaluation.downstream_variants if v in samples]
    downstream = run.downstream(data, {v: [samples[v]] for v in variants}, selector_stage)

    stages = run.store.manifest.get("stages", {})
    summary |= {
        "pass_rates": {v: evaluated.outputs[v] for v in samples},
        "selector_pass": evaluated.outputs.get("selector_pass"),
        "oracle_pass": evaluated.outputs.get("oracle_pass"),
        "class_presence": evaluated.outputs.get("class_presence"),
        "label_preservation": evaluated.outputs.get("label_preservation"),
        "warnings": [*(summary.get("score_diagnostics") or {}).get("warnings", []), *evaluated.outputs.get("warnings", [])],
        "fidelity": None if fidelity is None else {
            "feature_extractor": (fidelity.get("feature_extractor") or {}).get("label"),
            **{v: {k: m[k] for k in ("fid", "kid_mean", "psnr", "diversity_ms_ssim") if k in m} for v, m in fidelity["variants"].items()},
            "comparison": {
                k: {f: b.get(f) for f in ("difference", "ci95", "verdict")} for k, b in (fidelity.get("comparison") or {}).items()
            },
        },
        "downstream": _aggregate(downstream, run.dataset.task),
        "timings_s": {name: s.get("seconds") for name, s in stages.items()},
    }
    atomic_write_json(run.store.root / "summary.json", summary)
    run.store.update_manifest(summary_file="summary.json")
    return RunResult(store=run.store, config=run.config, summary=summary, samples=samples, session=run)
