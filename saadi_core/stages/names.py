"""The names of the loop's stages: every module that reads a stage by name (the pipeline, the
report, ``saadi pool export``, the study) uses these constants, so renaming a stage is one edit.

A name is also the stage's directory prefix in the run store (``stages/<name>-<key12>/``) and its
entry in ``manifest.json``; changing one orphans the cached results of old runs."""

from __future__ import annotations

DATA = "data"
TRAIN_GENERATOR = "train-generator"
TRAIN_SELECTOR = "train-selector"
GENERATE_POOL = "generate-pool"
SCORE = "score"
PAIR = "pair"
ALIGN = "align"
EVALUATE = "evaluate"
FIDELITY_COMPARE = "fidelity-compare"

#: the stages that exist only when the run aligns (``aligner`` set)
ALIGNMENT_STAGES: tuple[str, ...] = (GENERATE_POOL, SCORE, PAIR, ALIGN)


def sample_stage(variant: str) -> str:
    """``sample-base`` / ``sample-aligned``: one variant's held-out samples."""
    return f"sample-{variant}"


def fidelity_stage(variant: str) -> str:
    """``fidelity-base`` / ``fidelity-aligned``: one variant's fidelity metrics."""
    return f"fidelity-{variant}"


def downstream_stage(label: str, scale: float | None, seed: int) -> str:
    """``downstream-real-s0`` or ``downstream-aligned-1x-s0`` (``scale`` ``None`` = real only)."""
    return f"downstream-{label}" + (f"-{scale:g}x" if scale is not None else "") + f"-s{seed}"
