"""``sequence``: aligners one after another, each starting from what the previous one kept.

Why: to ask whether a preference signal adds anything to a fine-tuning that already helps (the
``train-longer`` control, then ``diffusion-dpo``), the second aligner has to start from the first
one's kept state and be measured against it. Folding the first adapter into the weights before
the second starts makes that state the second aligner's base in every sense: Diffusion-DPO's
reference network, and step 0 of its validation, which its checkpoint rule must beat. A part that
keeps nothing therefore leaves the previous part's result, not the base.

The parts run on a deep copy of the given generator, so the caller's base weights stay intact (the
:class:`~saadi_core.interfaces.Aligner` contract); peak memory is the copy plus what the parts
hold (an ``iterative`` part copies again). Each part's history entries carry ``part: k``. ``save``
writes part k to ``part-k/`` (the parts before the last were saved by ``align`` before folding;
the result's ``handover`` says where, so any ``sequence`` instance can save it); ``restore``
restores the parts in order onto a fresh base, folding between them, as ``align`` did.

With ``pool: on-policy`` each part after the first learns from a pool drawn from the previous
part's kept state (:mod:`saadi_align.on_policy`) instead of the pipeline's pool from the base: it
separates what a preference signal does to a state from what learning on another state's samples
does to it.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from saadi_align.on_policy import draw_pool, missing_inputs
from saadi_core.diffusion.lora import fold_lora
from saadi_core.errors import PipelineError
from saadi_core.interfaces import Aligner, AlignInputs, AlignResult, Generator
from saadi_core.registry import get_registry

HISTORY_FILE = "history.json"
#: an on-policy part k draws its pool with seed ``inputs.seed + POOL_SEED_OFFSET + k`` (clear of
#: the pipeline's pool, evaluation and validation seeds, and of ``iterative``'s rounds)
POOL_SEED_OFFSET = 70_000


def part_dir(path: Path, k: int) -> Path:
    return Path(path) / f"part-{k}"


def _fold(generator: Generator) -> None:
    """Make the previous part's adapters part of the weights (nothing to do for a generator
    without a diffusion target: its aligner added no LoRA)."""
    try:
        module = generator.diffusion_target().trainable_module()
    except NotImplementedError:
        return
    fold_lora(module)


class SequenceAligner(Aligner):
    """Aligners in order (options: :class:`saadi_align.options.SequenceOptions`)."""

    kind = "sequence"

    def _parts(self) -> list[Aligner]:
        registry = get_registry()
        return [
            registry.create(
                "aligner", spec.kind, spec.options, self.context, profile=self.context.profile
            )
            for spec in self.options.aligners
        ]

    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        on_policy = self.options.pool == "on-policy"
        if on_policy and len(self.options.aligners) > 1 and (missing := missing_inputs(inputs)):
            raise PipelineError(
                f"aligner 'sequence' with pool: on-policy needs {', '.join(missing)} in its inputs "
                "(the pipeline provides them); use pool: given"
            )
        current = copy.deepcopy(generator, memo={id(generator.context): generator.context})
        aligners = self._parts()
        history: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        kept: list[str] = []
        result: AlignResult | None = None
        for k, aligner in enumerate(aligners, start=1):
            if k > 1:
                _fold(current)
            work = part_dir(work_dir, k)
            work.mkdir(parents=True, exist_ok=True)
            part_inputs, pool_info = inputs, {}
            if k > 1 and on_policy:
                part_inputs, pool_info = draw_pool(
                    current,
                    inputs,
                    inputs.seed + POOL_SEED_OFFSET + k,
                    self.options.pool_per_condition,
                )
            result = aligner.align(current, part_inputs, work)
            if k < len(aligners):  # saved now: folding into the weights takes the adapter away
                aligner.save(result, work / "kept")
                kept.append(str(work / "kept"))
            current = result.generator
            history.extend({"part": k, **entry} for entry in result.history)
            parts.append({"part": k, "kind": aligner.kind, **pool_info, "meta": result.meta})
            self.context.progress.log("sequence_part", part=k, kind=aligner.kind)
        assert result is not None  # at least one aligner (options)
        meta = {
            "parts": parts,
            "aligned_equals_base": all(bool(p["meta"].get("aligned_equals_base")) for p in parts),
        }
        handover = {"kept": kept, "last": result.handover}
        return AlignResult(generator=current, history=history, meta=meta, handover=handover)

    def save(self, result: AlignResult, path: Path) -> None:
        """``part-k/`` as each part's aligner saves it, and ``history.json``. The parts before the
        last were saved by :meth:`align` before they were folded into the weights; the result's
        ``handover`` says where."""
        aligners = self._parts()
        kept = result.handover.get("kept")
        if kept is None or len(kept) != len(aligners) - 1:
            raise PipelineError(
                "aligner 'sequence' can only save a result of its own align() with the same aligners"
            )
        for k, source in enumerate(kept, start=1):
            shutil.copytree(source, part_dir(path, k))
        n = len(aligners)
        last = AlignResult(
            generator=result.generator,
            history=[
                {key: v for key, v in h.items() if key != "part"}
                for h in result.history
                if h["part"] == n
            ],
            meta=result.meta["parts"][-1]["meta"],
            handover=result.handover.get("last", {}),
        )
        aligners[-1].save(last, part_dir(path, n))
        (Path(path) / HISTORY_FILE).write_text(
            json.dumps({"history": result.history, "meta": result.meta}, indent=1)
        )

    def restore(self, generator: Generator, path: Path) -> Generator:
        for k, aligner in enumerate(self._parts(), start=1):
            if k > 1:
                _fold(generator)
            generator = aligner.restore(generator, part_dir(path, k))
        return generator
