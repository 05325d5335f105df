"""Your own preference pairs: export a run's pool as image files, rate them, import the ratings.

The selector is one source of preferences; people are another. A surgeon may judge generated
frames better than any model trained on a small dataset, or a lab may already hold pairs rated
for another study. The exchange format is deliberately plain:

* ``saadi pool export RUN --out DIR`` writes every pool sample as ``DIR/<name>.png`` (plus
  ``<name>_mask.png`` in colour for samples that carry a mask, so a rater sees the label the
  image must show) and ``DIR/pool.csv`` with one row per sample: ``file``, ``condition``,
  ``seed``, ``index`` and the selector's ``score``. Names come from :func:`sample_file_name`,
  which is a function of the sample's position and condition only, so the same pool always gets
  the same names.
* The rater writes a CSV with columns ``winner`` and ``loser`` naming those files (``.png``
  optional) — one row per pair, both of the same condition, as Diffusion-DPO needs.
* ``--pairing preferences --set pairing.options.file=prefs.csv`` pairs from that file instead of
  the selector scores (the ``preferences`` strategy of ``saadi_pairing``). The pool, its scores
  and everything before them are reused from the cache; pairing, alignment and evaluation rerun.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saadi_core.errors import DataError
from saadi_core.interfaces import Sample
from saadi_core.stages.names import GENERATE_POOL, SCORE
from saadi_core.store import StageNotFinished, atomic_write_text, finished_stage_dir

POOL_CSV = "pool.csv"
POOL_COLUMNS = ("file", "condition", "seed", "index", "score")


def sample_file_name(position: int, sample: Sample) -> str:
    """``00042_class-gallbladder``: the pool position (unique) and a file-safe condition id (readable)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", sample.condition.id).strip("-")[:60]
    return f"{position:05d}_{safe}"


def _stage_dir(run: Path, manifest: dict[str, Any], name: str) -> Path:
    try:
        return finished_stage_dir(run, manifest, name).resolve()
    except StageNotFinished as err:
        raise DataError(
            f"run {run} has no finished '{name}' stage ({err}); finish it with saadi run"
        ) from None


def load_pool(run: Path) -> tuple[list[Sample], list[float | None]]:
    """A finished run's pool samples and, when it has a finished ``score`` stage, their selector
    scores (else ``None`` each)."""
    from saadi_core.samples_io import load_samples

    run = Path(run)
    manifest_file = run / "manifest.json"
    if not manifest_file.is_file():
        raise DataError(f"{run} is not a run directory (no manifest.json)")
    manifest = json.loads(manifest_file.read_text())
    samples = load_samples(_stage_dir(run, manifest, GENERATE_POOL))
    try:
        scores = json.loads((_stage_dir(run, manifest, SCORE) / "scores.json").read_text())[
            "scores"
        ]
    except (DataError, OSError):  # the selector's scores are a courtesy to the rater, not required
        scores = [None] * len(samples)
    return samples, scores


def export_pool(run: Path, out: Path) -> Path:
    """Write the pool of ``run`` to ``out`` (see the module docstring); returns ``pool.csv``.

    Existing files in ``out`` with the same names are overwritten; the CSV is written last and
    atomically, so a half-finished export never has a ``pool.csv`` that names missing images."""
    from PIL import Image

    from saadi_core.report.images import mask_colours, to_uint8

    samples, scores = load_pool(run)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(POOL_COLUMNS)
    for position, (sample, score) in enumerate(zip(samples, scores)):
        name = sample_file_name(position, sample)
        Image.fromarray(to_uint8(sample.image)).save(out / f"{name}.png")
        mask = sample.mask if sample.mask is not None else sample.condition.mask
        if mask is not None:
            Image.fromarray(mask_colours(np.asarray(mask)).astype(np.uint8)).save(
                out / f"{name}_mask.png"
            )
        writer.writerow(
            [
                f"{name}.png",
                sample.condition.id,
                sample.seed,
                sample.index,
                "" if score is None else f"{score:.6g}",
            ]
        )
    atomic_write_text(out / POOL_CSV, table.getvalue())
    return out / POOL_CSV


def read_preferences(path: Path, samples: Sequence[Sample]) -> list[tuple[int, int]]:
    """``(winner, loser)`` pool positions from a preferences CSV (columns ``winner``, ``loser``
    naming exported files). Every problem is a one-line :class:`DataError` naming the file and
    line: a missing column, an unknown file, a sample paired with itself, a pair across
    conditions. Repeated rows count once."""
    path = Path(path).expanduser()
    by_name = {sample_file_name(i, s): i for i, s in enumerate(samples)}
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"preferences file {path}: cannot be read ({exc})") from None
    if not rows or not {"winner", "loser"} <= set(rows[0]):
        raise DataError(
            f"preferences file {path}: needs a header with the columns 'winner' and 'loser' and at least one row"
        )
    pairs: dict[tuple[int, int], None] = {}
    for line, row in enumerate(rows, start=2):
        chosen = []
        for column in ("winner", "loser"):
            name = Path(str(row.get(column) or "").strip()).name.removesuffix(".png")
            if name not in by_name:
                raise DataError(
                    f"{path}:{line}: {column} '{row.get(column)}' is not a sample of this run's pool "
                    "(names come from 'saadi pool export')"
                )
            chosen.append(by_name[name])
        winner, loser = chosen
        if winner == loser:
            raise DataError(
                f"{path}:{line}: a sample cannot be preferred to itself ({row['winner']})"
            )
        if samples[winner].condition.id != samples[loser].condition.id:
            raise DataError(
                f"{path}:{line}: winner and loser have different conditions ('{samples[winner].condition.id}' vs "
                f"'{samples[loser].condition.id}'); Diffusion-DPO compares samples of one condition"
            )
        pairs[(winner, loser)] = None
    return list(pairs)
