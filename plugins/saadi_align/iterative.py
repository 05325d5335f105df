"""``iterative``: the SAADi paper's iterative refinement around any inner aligner.

Round 1 aligns on the pairs the pipeline formed. Round k > 1 samples the round-(k−1) aligned
generator for the dataset's conditions, trains a NEW selector on real + those samples, re-scores
the ORIGINAL pool with it, re-pairs with the run's pairing strategy and aligns again — from the
base generator (the paper's default, docs/method.md) or, with ``continue_from_previous``, from the round-(k−1) one.

The inner aligner is built through the registry, so a third-party aligner works as the inner one.
Starting each round from the base needs the base intact while earlier rounds' aligned generators
are sampled: rounds before the last align a deep copy of the base generator (sharing the run
context); the last round aligns the given generator object itself, so ``iterative`` returns the
caller's generator with the final adapters on it, like ``diffusion-dpo``. Peak memory is therefore
two generators during rounds 1…N−1 (one with ``continue_from_previous``, where every round adapts
the given generator further).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from saadi_align.on_policy import draw_pool, missing_inputs, pair_counts
from saadi_core.errors import PipelineError
from saadi_core.interfaces import Aligner, AlignInputs, AlignResult, Generator, PairSet
from saadi_core.registry import get_registry

FINAL_DIR = "final"
HISTORY_FILE = "history.json"
#: round k samples the previous round's generator with seed ``inputs.seed + SAMPLE_SEED_OFFSET + k``
#: (kept clear of the pipeline's pool, evaluation and validation seeds)
SAMPLE_SEED_OFFSET = 50_000
#: an on-policy round k draws its pool with seed ``inputs.seed + ON_POLICY_SEED_OFFSET + k``
ON_POLICY_SEED_OFFSET = 60_000


class IterativeAligner(Aligner):
    """Iterative refinement (options: :class:`saadi_align.options.IterativeOptions`)."""

    kind = "iterative"

    def _inner(self) -> Aligner:
        spec = self.options.inner
        return get_registry().create(
            "aligner", spec.kind, spec.options, self.context, profile=self.context.profile
        )

    def _check_inputs(self, inputs: AlignInputs) -> None:
        missing = (
            missing_inputs(inputs)
            if self.options.pool == "on-policy"
            else missing_inputs(inputs, ("new_selector", "pairing", "pool"))
        )
        if missing:
            raise PipelineError(
                f"aligner 'iterative' with rounds={self.options.rounds} needs {', '.join(missing)} in its inputs "
                "(the pipeline provides them); set rounds: 1 to align once"
            )

    def _repair(
        self, previous: Generator, inputs: AlignInputs, round_k: int
    ) -> tuple[AlignInputs, dict[str, Any]]:
        """Retrain a selector on real + aligned samples, re-score the original pool, re-pair."""
        seed = inputs.seed + SAMPLE_SEED_OFFSET + round_k
        aligned = previous.sample(
            previous.conditions(inputs.dataset), self.options.n_per_condition, seed
        )
        selector = inputs.new_selector()  # type: ignore[misc]
        selector.fit(inputs.dataset, extra=aligned)
        scores = [float(s) for s in selector.score(inputs.pool)]
        pairs: PairSet = inputs.pairing.pairs(inputs.pool, scores, seed=inputs.seed)  # type: ignore[union-attr]
        info = {
            "n_aligned_samples": len(aligned),
            "sample_seed": seed,
            "mean_pool_score": sum(scores) / len(scores),
            "pair_stats": pair_counts(pairs),
        }
        if len(pairs) == 0:
            raise PipelineError(
                f"iterative round {round_k}: the selector retrained on real + aligned samples leaves no preference "
                "pairs in the original pool; lower the threshold h, enlarge the pool or use fewer rounds"
            )
        return replace(inputs, pairs=pairs, scores=scores, selector=selector), info

    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        opts = self.options
        if opts.rounds > 1:
            self._check_inputs(inputs)
        progress = self.context.progress
        history: list[dict[str, Any]] = []
        rounds: list[dict[str, Any]] = []
        round_inputs = inputs
        previous: AlignResult | None = None
        for k in range(1, opts.rounds + 1):
            info: dict[str, Any] = {}
            if previous is not None and opts.pool == "on-policy":
                round_inputs, info = draw_pool(
                    previous.generator,
                    inputs,
                    inputs.seed + ON_POLICY_SEED_OFFSET + k,
                    opts.pool_per_condition,
                )
            elif previous is not None:
                round_inputs, info = self._repair(previous.generator, inputs, k)
            if opts.continue_from_previous:  # every round adapts the same generator further
                subject = generator if previous is None else previous.generator
            elif k < opts.rounds:
                subject = copy.deepcopy(generator, memo={id(generator.context): generator.context})
            else:
                subject = generator
            previous = None  # let the previous round's copy go before the next alignment
            round_dir = Path(work_dir) / f"round-{k}"
            round_dir.mkdir(parents=True, exist_ok=True)
            result = self._inner().align(subject, round_inputs, round_dir)
            history.extend({"round": k, **entry} for entry in result.history)
            rounds.append(
                {"round": k, "n_pairs": len(round_inputs.pairs), **info, "meta": result.meta}
            )
            progress.log("iterative_round", round=k, n_pairs=len(round_inputs.pairs))
            previous = result
        assert previous is not None  # rounds >= 1
        meta = {
            "rounds": rounds,
            "inner": opts.inner.model_dump(),
            "continue_from_previous": opts.continue_from_previous,
            "pool": opts.pool,
            "final_round": previous.meta,
            "aligned_equals_base": bool(previous.meta.get("aligned_equals_base", False)),
        }
        return AlignResult(
            generator=previous.generator, history=history, meta=meta, handover=previous.handover
        )

    def save(self, result: AlignResult, path: Path) -> None:
        """``final/`` (what the inner aligner saves for the last round) and ``history.json``.
        The last round's additions alone reproduce the aligned generator from the base."""
        path = Path(path)
        last = result.meta["rounds"][-1]["round"]
        final = AlignResult(
            generator=result.generator,
            history=[h for h in result.history if h.get("round") == last],
            meta=result.meta["final_round"],
            handover=result.handover,
        )
        self._inner().save(final, path / FINAL_DIR)
        (path / HISTORY_FILE).write_text(
            json.dumps({"history": result.history, "meta": result.meta}, indent=1)
        )

    def restore(self, generator: Generator, path: Path) -> Generator:
        return self._inner().restore(generator, Path(path) / FINAL_DIR)
