"""The evidence table of a study: does alignment help, compared with the cheaper alternatives?

One row per arm (and real-only): the arm's synthetic samples' oracle and selector pass rates,
label preservation (segmentation), FID in the run's feature space, the downstream metric as mean ±
std over (study seed × downstream seed) cells, and the paired difference of every cell to the
``base`` arm and to the ``filter`` arm with a t-based 95 % confidence interval. The stage time an
arm needs is added when the table is printed (:func:`evidence_lines`, read from the run stores):
wall time depends on the machine and its load, and ``study.json`` is the same on every executor.
The reference arms are found by shape: ``base`` = the first generator arm without aligner or
filter, ``filter`` = the first filter arm without aligner.

A study may mark one arm ``control: true`` (usually ``aligner: train-longer``: the same fine-tuning
on the real images alone). Every row is then also compared with it, downstream (paired CI) and on
what the images show: the oracle verdicts of the arm's evaluation samples against the control's,
drawn from the same seeds under the same conditions, with an exact McNemar test per study seed and
pooled over them — and, when the samples fall in enough conditions (segmentation masks and
layouts), a paired t-test over the conditions' mean changes (pooled: over the seeds' conditions),
which then decides the verdict: samples of one mask fail together
(:func:`saadi_core.evaluation.stats.condition_paired_test`). The same paired oracle test against each run's own base samples (its
generator's, which is the ``base`` arm's when they share a generator) is given for every arm with
evaluation samples, so "− base" and "− control" read alike. Filter arms and mixes
have no evaluation samples of their own (theirs are pool samples), so they get only the
downstream comparisons.

Cells that share a study seed share the generator, so they are not independent; the table also
gives the interval over the per-study-seed means (``ci95_by_seed``), the conservative one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saadi_core.config import ArmConfig, StudyConfig
from saadi_core.evaluation.stats import (
    condition_paired_test,
    interval_verdict,
    mcnemar_exact,
    paired_interval,
    with_condition_test,
)
from saadi_core.stages.names import EVALUATE
from saadi_core.store import MANIFEST, StageNotFinished, finished_stage_dir

Cell = tuple[int, str]  # (study seed, downstream seed)


def _variant(arm: ArmConfig, label: str) -> str:
    """The key under which the arm's own synthetic set appears in its run summary (``label``:
    the arm's study label)."""
    return label if arm.filter else ("aligned" if arm.aligner is not None else "base")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _stage_seconds(run_dir: str) -> float | None:
    """Seconds of every stage the run used, cached ones included (what the arm costs alone)."""
    root = Path(run_dir)
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    total = 0.0
    for stage in manifest.get("stages", {}).values():
        path = stage.get("path")
        meta = root / path / "stage.json" if path else None
        if meta is not None and meta.is_file():
            total += float(json.loads(meta.read_text(encoding="utf-8")).get("seconds") or 0.0)
    return total


def _comparison(
    values: dict[Cell, float], reference: dict[Cell, float], name: str
) -> dict[str, Any] | None:
    cells = sorted(set(values) & set(reference))
    if not cells or values is reference:
        return None
    diffs = [values[c] - reference[c] for c in cells]
    interval = paired_interval(diffs)
    by_seed: dict[int, list[float]] = {}
    for cell, diff in zip(cells, diffs):
        by_seed.setdefault(cell[0], []).append(diff)
    seed_interval = paired_interval([sum(d) / len(d) for d in by_seed.values()])
    return {
        "difference": sum(diffs) / len(diffs),
        "ci95": list(interval) if interval else None,
        "n_cells": len(diffs),
        "verdict": interval_verdict(interval, baseline=name, unit="cells"),
        "ci95_by_seed": list(seed_interval) if seed_interval else None,
    }


def _oracle_verdicts(run_dir: str, variant: str) -> tuple[list[bool], list[str] | None] | None:
    """The oracle's per-sample verdicts on a run's evaluation samples of ``variant`` ("base" or
    "aligned") and each sample's condition (``None`` in records written before conditions were
    kept), as the evaluate stage recorded them; ``None`` without an oracle or a record."""
    root = Path(run_dir)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        stage = finished_stage_dir(root, manifest, EVALUATE)
        record = json.loads((stage / variant / "scores.json").read_text(encoding="utf-8"))
    except (OSError, StageNotFinished, json.JSONDecodeError):
        return None
    verdicts, conditions = record.get("oracle"), record.get("conditions")
    if not isinstance(verdicts, list):
        return None
    return [bool(v) for v in verdicts], conditions if isinstance(conditions, list) else None


def _paired_oracle(
    runs: dict[int, dict[str, Any]],
    variant: str,
    reference: dict[int, dict[str, Any]],
    reference_variant: str,
) -> dict[str, Any] | None:
    """Exact McNemar of an arm's oracle verdicts against a reference's on the same evaluation
    samples (same seeds and conditions), per study seed and pooled (arm − reference, points),
    with the condition-level test where there are enough conditions (module docstring)."""
    per_seed: dict[str, dict[str, Any]] = {}
    pooled_arm: list[bool] = []
    pooled_ref: list[bool] = []
    pooled_groups: list[str] | None = []
    for seed in sorted(set(runs) & set(reference)):
        mine = _oracle_verdicts(runs[seed]["run"], variant)
        theirs = _oracle_verdicts(reference[seed]["run"], reference_variant)
        if mine is None or theirs is None or len(mine[0]) != len(theirs[0]):
            continue
        groups = mine[1] if mine[1] is not None and mine[1] == theirs[1] else None
        test = mcnemar_exact(theirs[0], mine[0])
        block = {
            k: test[k] for k in ("difference_points", "fail_to_pass", "pass_to_fail", "p_value")
        }
        by_condition = None if groups is None else condition_paired_test(groups, theirs[0], mine[0])
        per_seed[str(seed)] = block | (
            {} if by_condition is None else {"by_condition": by_condition}
        )
        pooled_arm += mine[0]
        pooled_ref += theirs[0]
        pooled_groups = (
            None
            if groups is None or pooled_groups is None
            else pooled_groups + [f"{seed}/{g}" for g in groups]
        )
    if not per_seed:
        return None
    pooled = mcnemar_exact(pooled_ref, pooled_arm)
    by_condition = (
        None
        if pooled_groups is None
        else condition_paired_test(pooled_groups, pooled_ref, pooled_arm)
    )
    return {"per_seed": per_seed, "pooled": with_condition_test(pooled, by_condition)}


def evidence_table(
    study: StudyConfig,
    per_seed: dict[str, dict[int, dict[str, Any]]],
    task: str,
    real_by_cell: dict[Cell, float],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The table described in the module docstring (first scale of the study); ``labels`` are
    the arms' synthetic-set labels by arm name (:func:`saadi_core.study.arm_label`)."""
    metric = "macro_f1" if task == "classification" else "mean_dice"
    scale = study.scales[0]
    downstream: dict[str, dict[Cell, float]] = {"real only": dict(real_by_cell)}
    for arm in study.arms:
        key = f"real+{labels[arm.name]}@{scale:g}x"
        downstream[arm.name] = {
            (seed, ds): v[key][metric]
            for seed, run in per_seed[arm.name].items()
            for ds, v in run["by_variant"].items()
            if key in v
        }
    base = next(
        (a.name for a in study.arms if a.mix is None and a.aligner is None and not a.filter), None
    )
    filt = next((a.name for a in study.arms if a.filter and a.aligner is None), None)
    control = next((a.name for a in study.arms if a.control), None)

    rows = []
    for name, values in downstream.items():
        arm = next((a for a in study.arms if a.name == name), None)
        row: dict[str, Any] = {"arm": name}
        if arm is not None and arm.mix is None:
            variant = _variant(arm, labels[name])
            runs = per_seed[name].values()
            rates = [r.get("pass_rates", {}).get(variant, {}) for r in runs]
            row["oracle_pass"] = _mean(
                [x["oracle_rate"] for x in rates if x.get("oracle_rate") is not None]
            )
            row["selector_pass"] = _mean(
                [x["selector_rate"] for x in rates if x.get("selector_rate") is not None]
            )
            row["label_preservation"] = _mean(
                [
                    (r.get("label_preservation") or {}).get(variant, {}).get("miou")
                    for r in runs
                    if (r.get("label_preservation") or {}).get(variant)
                ]
            )
            row["fid"] = _mean(
                [
                    (r.get("fidelity") or {}).get(variant, {}).get("fid")
                    for r in runs
                    if (r.get("fidelity") or {}).get(variant, {}).get("fid") is not None
                ]
            )
        scores = [values[c] for c in sorted(values)]
        if scores:
            mean = sum(scores) / len(scores)
            row[metric] = {
                "mean": mean,
                "std": (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5,
                "n_cells": len(scores),
            }
        for ref_name, label in ((base, "vs_base"), (filt, "vs_filter"), (control, "vs_control")):
            if ref_name is not None and name != ref_name and name != "real only":
                row[label] = _comparison(values, downstream[ref_name], ref_name)
        if arm is not None and arm.mix is None and not arm.filter:
            variant = _variant(arm, labels[name])
            row["oracle_vs_base"] = (
                _paired_oracle(per_seed[name], variant, per_seed[name], "base")
                if variant != "base"
                else None
            )
            if control is not None and name != control:
                row["oracle_vs_control"] = _paired_oracle(
                    per_seed[name], variant, per_seed[control], "aligned"
                )
        rows.append(row)
    return {
        "metric": metric,
        "scale": scale,
        "base_arm": base,
        "filter_arm": filt,
        "control_arm": control,
        "rows": rows,
    }


def stage_seconds_per_seed(runs: list[str]) -> float | None:
    """Mean over an arm's runs (one per seed) of the seconds of every stage the run used."""
    return _mean([s for s in (_stage_seconds(run) for run in runs) if s is not None])


def evidence_lines(
    evidence: dict[str, Any], runs: dict[str, list[str]] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Column names and text rows of the evidence table (CLI and docs); ``runs`` (run directories
    by arm name, as in ``study.json`` → ``arms``) adds the stage time per seed. Columns with no
    figure in any row are left out."""
    metric = evidence["metric"]
    seconds = {name: stage_seconds_per_seed(dirs) for name, dirs in (runs or {}).items()}

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f} %"

    def diff(block: dict[str, Any] | None) -> str:
        if not block:
            return "—"
        ci = block.get("ci95")
        return (
            f"{block['difference']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
            if ci
            else f"{block['difference']:+.3f}"
        )

    def oracle(block: dict[str, Any] | None) -> str:
        if not block:
            return "—"
        test = block["pooled"]
        text = f"{test['difference_points']:+.1f} (p = {test['p_value']:.2g})"
        layouts = test.get("by_condition")
        if layouts:
            text += f"; over {layouts['n_conditions']} conditions p = {layouts['p_value']:.2g}"
        return text

    control = evidence.get("control_arm")
    columns = [
        "arm",
        "oracle pass",
        "oracle − own base (McNemar)",
        "selector pass",
        "label pres. (mIoU)",
        "FID",
        f"{metric} mean ± std (cells)",
        f"− {evidence.get('base_arm') or 'base'} [95 % CI]",
        f"− {evidence.get('filter_arm') or 'filter'} [95 % CI]",
    ]
    if control:
        columns += [f"oracle − {control} (McNemar)", f"− {control} [95 % CI]"]
    columns.append("stage s / seed")
    rows = []
    for r in evidence["rows"]:
        m = r.get(metric)
        line = [
            r["arm"],
            pct(r.get("oracle_pass")),
            oracle(r.get("oracle_vs_base")),
            pct(r.get("selector_pass")),
            pct(r.get("label_preservation")),
            "—" if r.get("fid") is None else f"{r['fid']:.1f}",
            "—" if m is None else f"{m['mean']:.3f} ± {m['std']:.3f} ({m['n_cells']})",
            diff(r.get("vs_base")),
            diff(r.get("vs_filter")),
        ]
        if control:
            line += [oracle(r.get("oracle_vs_control")), diff(r.get("vs_control"))]
        line.append("—" if seconds.get(r["arm"]) is None else f"{seconds[r['arm']]:.0f}")
        rows.append(line)
    # a study without downstream models (or without a filter arm) has whole columns of dashes:
    # left out, so the table fits a terminal
    keep = [i for i in range(len(columns)) if i == 0 or any(line[i] != "—" for line in rows)]
    return [columns[i] for i in keep], [[line[i] for i in keep] for line in rows]
