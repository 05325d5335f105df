"""``align``: Diffusion-DPO (or another aligner) on the pairs, validated on held-out seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from saadi_core.errors import PipelineError
from saadi_core.evaluation.samples import oracle_pass
from saadi_core.interfaces import AlignInputs, Generator, PairSet, Selector
from saadi_core.session import RunSession, per_condition
from saadi_core.stages.names import ALIGN, PAIR, TRAIN_GENERATOR, TRAIN_SELECTOR
from saadi_core.stages.score import NEAR_CONSTANT_STD
from saadi_core.store import StageResult, atomic_write_json

NAME = ALIGN
INPUTS = (TRAIN_GENERATOR, PAIR, TRAIN_SELECTOR)
OUTPUTS = ("aligner/", "history.json")
#: DPO runs the generator's and the selector's code; iterative rounds re-pair
SLOTS = ("aligner", "generator", "selector", "pairing")


def run(
    session: RunSession,
    trained: StageResult,
    pool: StageResult,
    scored: StageResult,
    paired: StageResult,
    selector_stage: StageResult,
) -> StageResult:
    def compute(out: Path) -> dict[str, Any]:
        pair_set = session.pair_set(pool, scored, paired)
        if not pair_set.pairs:
            raise _no_pairs(pair_set, scored)
        from saadi_core.samples_io import load_samples

        generator = session.load_generator(trained)
        selector = session.load_selector(selector_stage)
        aligner = session.create("aligner")
        inputs = AlignInputs(
            pairs=pair_set,
            dataset=session.dataset,
            pool=load_samples(pool.path),
            scores=session.scores(scored),
            selector=selector,
            pairing=session.create("pairing"),
            new_selector=lambda: session.create("selector"),
            validate=validator(session, selector),
            seed=session.config.seed,
            threshold=session.threshold(),
        )
        work = out / "work"
        work.mkdir()
        result = aligner.align(generator, inputs, work)
        aligner.save(result, out / "aligner")
        atomic_write_json(out / "history.json", {"history": result.history, "meta": result.meta})
        last = next((h for h in reversed(result.history) if "implicit_accuracy" in h), {})
        return {
            "steps": len(result.history),
            "implicit_accuracy": last.get("implicit_accuracy"),
            "meta": result.meta,
        }

    return session.stage(
        NAME, params(session), compute, [trained, paired, selector_stage], slots=SLOTS
    )


def params(session: RunSession) -> dict[str, Any]:
    """The aligner's key, and where it validates when that is not the training conditions."""
    from saadi_core.evaluation.conditions import TRAINING, evaluation_layouts, resolve

    values = session.params("aligner")
    if not session.threshold_keyed_by_pairing():  # the validator's h decides which state is kept
        values = values | {"validation_threshold": session.threshold()}
    where = resolve(session.config.evaluation.conditions, session.dataset)
    if where == TRAINING:
        return values
    # the validator then marks its conditions as sampled: aligners bound over layouts; it
    # validates on every layout the evaluation leaves (not a generator-sized pick of them)
    values = values | {
        "validation_conditions": where,
        "sampled_conditions": True,
        "validation_layouts": "every-unused",
    }
    layouts = evaluation_layouts(session.config.evaluation, session.dataset)
    if layouts is not None:  # which layouts are left to validate on
        values["evaluation_layouts"] = layouts
    return values


def _no_pairs(pair_set: PairSet, scored: StageResult) -> PipelineError:
    stats = pair_set.stats
    constant = scored.outputs.get("std") is not None and scored.outputs["std"] < NEAR_CONSTANT_STD
    return PipelineError(
        (
            f"the selector gave near-constant scores (std {scored.outputs['std']:.3f}), so "
            if constant
            else ""
        )
        + "no preference pairs were found "
        f"({len(stats.get('conditions_without_winner', []))} condition(s) without a winner, "
        f"{len(stats.get('conditions_without_loser', []))} without a loser); "
        "change the threshold h (--set pairing.options.threshold=…), enlarge the pool "
        "(--set pool.n_per_condition=…) or train the generator longer"
    )


def validator(session: RunSession, selector: Selector) -> Callable[..., dict[str, Any]]:
    """Held-out validation for the aligner: fixed seeds (disjoint from pool and evaluation), on
    the training conditions or the unseen layouts the evaluation does not use
    (:func:`saadi_core.evaluation.conditions.validation_conditions`); selector pass rate and,
    on toy data, oracle pass rate; ``per_sample`` holds the same per
    sample (paired checkpoint selection) and ``groups`` each sample's condition (per-condition
    guard), ``size`` overrides the profile's sample count."""
    from saadi_core.evaluation.conditions import (
        UNSEEN,
        evaluation_layouts,
        resolve,
        validation_conditions,
    )

    seed = session.eval_seed + 10_000
    threshold = session.threshold()
    where = resolve(session.config.evaluation.conditions, session.dataset)
    layouts = evaluation_layouts(session.config.evaluation, session.dataset)

    built: list[tuple[list[Any], str]] = []

    def validate(generator: Generator, size: int | None = None) -> dict[str, Any]:
        # built once: conditions come from the dataset and the generator's kind, not its weights,
        # and every validation must sample the same ones for the paired checkpoint rule
        if not built:
            built.append(validation_conditions(generator, session.dataset, where, layouts))
        conditions, kind = built[0]
        samples = generator.sample(
            conditions,
            per_condition(size or session.sizes["validation_size"], len(conditions)),
            seed,
        )
        scores = selector.score(samples)
        metrics: dict[str, Any] = {
            "selector_pass": sum(s >= threshold for s in scores) / len(scores),
            "mean_score": sum(scores) / len(scores),
        }
        # per-sample values on the same seeds every call: aligners compare candidates paired
        metrics["per_sample"] = {
            "selector_pass": [float(s >= threshold) for s in scores],
            "mean_score": list(scores),
        }
        metrics["groups"] = [s.condition.id for s in samples]
        # unseen layouts are a draw of many possible ones: the aligner's bounds count layouts
        metrics["sampled_conditions"] = kind == UNSEEN
        oracle = oracle_pass(session.dataset, samples)
        if oracle is not None:
            metrics["oracle_pass"] = sum(oracle) / len(oracle)
            metrics["per_sample"]["oracle_pass"] = [float(o) for o in oracle]
        return metrics

    return validate
