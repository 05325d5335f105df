"""The study-level sections: arms × scales, the data-scaling plot, comparisons with confidence
intervals, the evidence table (every arm against base, filter and control), per-class results,
pass rates per arm, and every run of the study (collapsible)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saadi_core.errors import SaadiError
from saadi_core.report import figures
from saadi_core.report.data import Missing, StudyData, load_run
from saadi_core.report.markup import (
    details,
    figure,
    fmt,
    mean_std,
    not_available,
    note,
    section,
    table,
    text,
    verdict_span,
)
from saadi_core.report.run_sections import (
    Section,
    pass_rate_table,
    pct,
    run_sections,
    variant_rates_table,
)
from saadi_core.report.wording import ci_reading

#: (anchor, heading) of every study section, in page order
STUDY_SECTIONS: tuple[tuple[str, str], ...] = (
    ("study-overview", "Study overview"),
    ("study-downstream", "Downstream by arm and scale"),
    ("study-scaling", "Data scaling"),
    ("study-comparisons", "Comparisons"),
    ("study-evidence", "Does alignment help? Evidence table"),
    ("study-per-class", "Per-class downstream"),
    ("study-pass-rates", "Pass rates by arm"),
    ("study-runs", "Runs"),
)


def study_sections(study: StudyData, registry: Any = None) -> list[Section]:
    builders: dict[str, Callable[[StudyData], str]] = {
        "study-overview": overview,
        "study-downstream": downstream,
        "study-scaling": scaling,
        "study-comparisons": comparisons,
        "study-evidence": evidence,
        "study-per-class": per_class,
        "study-pass-rates": pass_rates,
        "study-runs": lambda s: runs(s, registry),
    }
    out = []
    for anchor, title in STUDY_SECTIONS:
        try:
            body = builders[anchor](study)
        except (
            Exception
        ) as exc:  # a malformed study.json entry must cost one section, not the report
            body = not_available(
                f"could not render this section from study.json ({type(exc).__name__}: {exc})"
            )
        out.append(Section(anchor, title, body))
    return out


def _metric(study: StudyData) -> str:
    return str(study.study.get("metric") or "metric")


def _scales(study: StudyData) -> list[float]:
    return [float(s) for s in study.study.get("scales") or []]


def _at_scale(by_scale: dict[str, Any] | None, scale: float) -> Any:
    """The entry for ``scale`` whether the key was written as ``"1"``, ``"1.0"`` or ``"1x"``."""
    for key, value in (by_scale or {}).items():
        try:
            if float(str(key).rstrip("x×")) == scale:
                return value
        except ValueError:
            continue
    return None


def _arms(study: StudyData) -> list[dict[str, Any]]:
    return [a for a in study.study.get("arms") or [] if isinstance(a, dict)]


def overview(study: StudyData) -> str:
    s = study.study
    facts = {
        "study": s.get("name"),
        "directory": str(study.root),
        "task": s.get("task"),
        "downstream metric": s.get("metric"),
        "seeds": ", ".join(str(v) for v in s.get("seeds") or []) or None,
        "scales (× real train size)": ", ".join(f"{v:g}" for v in _scales(study)) or None,
    }
    parts = [
        table(
            ("", "value"),
            [[text(k), text(v) if v is not None else "—"] for k, v in facts.items()],
            text_columns=(0, 1),
        )
    ]
    rows = []
    for arm in _arms(study):
        mix = arm.get("mix")
        rows.append(
            [
                text(arm.get("name")),
                text(arm.get("generator") or "—"),
                fmt(bool(arm.get("aligned"))),
                text(", ".join(mix)) if mix else "—",
                str(len(arm.get("runs") or {})),
            ]
        )
    parts.append(
        "<h3>Arms</h3>"
        + (
            table(
                ("arm", "generator", "aligned", "mix of arms", "runs"), rows, text_columns=(0, 1, 3)
            )
            if rows
            else not_available("study.json lists no arms")
        )
    )
    return "".join(parts)


def evidence(study: StudyData) -> str:
    """The table ``saadi study`` prints (:func:`saadi_core.evidence.evidence_lines`)."""
    from saadi_core.evidence import evidence_lines

    table_data = study.study.get("evidence")
    if not table_data:
        return not_available("study.json has no evidence table (written by an older saadi)")
    runs = {
        str(arm.get("name")): [str(r) for r in (arm.get("runs") or {}).values()]
        for arm in _arms(study)
        if arm.get("mix") is None
    }
    columns, rows = evidence_lines(table_data, runs)
    reading = (
        "Oracle columns: what the images really show, paired sample by sample (same seeds, same "
        "conditions) with an exact McNemar test pooled over the study seeds; a mix or filter arm "
        "has no evaluation samples of its own. Downstream columns: the paired difference of every "
        "(seed, downstream seed) cell with a 95 % t interval; an interval holding 0 is no "
        "difference. Stage seconds: what one seed of the arm costs alone."
    )
    return table(columns, [[text(c) for c in row] for row in rows]) + note(reading)


def _real_only_line(study: StudyData) -> str:
    real = study.study.get("real_only")
    if not real:
        return not_available("no real-only baseline in study.json")
    n = len(real.get("values") or [])
    return (
        f"<p><strong>Real only</strong> (no synthetic data): {mean_std(real)}"
        + (f" over {n} seeds" if n else "")
        + "</p>"
    )


def downstream(study: StudyData) -> str:
    scales = _scales(study)
    arms = _arms(study)
    if not arms or not scales:
        return not_available("study.json has no arms or no scales")
    rows = []
    for arm in arms:
        cells = []
        for scale in scales:
            entry = _at_scale(arm.get("downstream"), scale)
            n = len((entry or {}).get("values") or [])
            cells.append(mean_std(entry) + (f" (n={n})" if n else ""))
        rows.append([text(arm.get("name")), *cells])
    header = ["arm", *(f"{s:g}×" for s in scales)]
    return (
        _real_only_line(study)
        + table(header, rows)
        + note(f"{_metric(study)} on the real test split, mean ± std over seeds (n = seeds).")
    )


def scaling(study: StudyData) -> str:
    scales = _scales(study)
    arms = _arms(study)
    if not arms or not scales:
        return not_available("study.json has no arms or no scales")
    points = {}
    for arm in arms:
        series = []
        for scale in scales:
            entry = _at_scale(arm.get("downstream"), scale) or {}
            series.append((entry.get("mean"), entry.get("std")))
        points[str(arm.get("name"))] = series
    if not any(m is not None for series in points.values() for m, _ in series):
        return not_available("no arm has downstream results")
    real = study.study.get("real_only") or {}
    baseline = (
        (float(real["mean"]), float(real.get("std") or 0.0))
        if real.get("mean") is not None
        else None
    )
    png = figures.data_scaling(scales, points, baseline, _metric(study))
    return figure(
        png,
        "data scaling plot",
        "Downstream metric against the amount of synthetic data added (× real train size); error "
        "bars: ± std over seeds; dashed line and band: real only ± std.",
    )


def comparisons(study: StudyData) -> str:
    items = [c for c in study.study.get("comparisons") or [] if isinstance(c, dict)]
    if not items:
        return not_available("study.json has no comparisons")
    rows = []
    for c in items:
        ci = c.get("ci95")
        wording, tone = ci_reading(c.get("difference"), ci)
        ci_text = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci and len(ci) == 2 else "—"
        scale = c.get("scale")
        rows.append(
            [
                text(c.get("arm")),
                text(f"{float(scale):g}×")
                if isinstance(scale, (int, float))
                else text(scale if scale is not None else "—"),
                text(c.get("vs")),
                f"{c['difference']:+.4f}" if isinstance(c.get("difference"), (int, float)) else "—",
                ci_text,
                fmt(c.get("n_seeds")),
                verdict_span(wording, tone),
            ]
        )
    header = (
        "arm",
        "scale",
        "vs",
        f"difference in {_metric(study)}",
        "95 % CI",
        "seeds",
        "reading",
    )
    return table(header, rows, text_columns=(0, 2, 6)) + note(
        "A difference whose 95 % confidence interval contains 0 is reported as no significant "
        "difference, whatever its sign."
    )


def per_class(study: StudyData) -> str:
    scales = _scales(study)
    rows, classes = [], []
    for arm in _arms(study):
        for scale in scales:
            entry = _at_scale(arm.get("downstream"), scale) or {}
            pc = entry.get("per_class") or {}
            classes.extend(c for c in pc if c not in classes)
            rows.append((str(arm.get("name")), scale, pc))
    real_pc = (study.study.get("real_only") or {}).get("per_class") or {}
    classes.extend(c for c in real_pc if c not in classes)
    if not classes:
        return not_available("study.json has no per-class downstream results")
    body = []
    if real_pc:
        body.append([text("real only"), "—", *(fmt(_mean_of(real_pc.get(c))) for c in classes)])
    for name, scale, pc in rows:
        body.append([text(name), f"{scale:g}×", *(fmt(_mean_of(pc.get(c))) for c in classes)])
    return table(["arm", "scale", *classes], body) + note("Mean over seeds of the per-class score.")


def _mean_of(value: Any) -> Any:
    return value.get("mean") if isinstance(value, dict) else value


def pass_rates(study: StudyData) -> str:
    """Two tables over all arms and seeds: each variant's pass rates, and the paired
    base-vs-aligned test of the aligned arms."""
    rates: dict[str, dict[str, Any]] = {}
    tests: list[tuple[str, dict[str, Any]]] = []
    preserved: list[tuple[str, dict[str, Any]]] = []
    for arm in _arms(study):
        for seed, blocks in (arm.get("pass_rates") or {}).items():
            where = f"{arm.get('name')}, seed {seed}"
            for variant, r in (blocks.get("pass_rates") or {}).items():
                rates[f"{where}: {variant}"] = r
            for label, key in (("selector pass", "selector_pass"), ("oracle pass", "oracle_pass")):
                if blocks.get(key):
                    tests.append((f"{where}: {label}", blocks[key]))
            if blocks.get("label_preservation"):
                preserved.append((where, blocks["label_preservation"]))
    if not rates and not tests:
        return not_available("no arm recorded pass rates")
    parts = [variant_rates_table(rates)] if rates else []
    if tests:
        parts.append(
            "<h3>Base vs aligned on the same seeds (exact McNemar)</h3>" + pass_rate_table(tests)
        )
    if preserved:
        parts.append(
            "<h3>Label preservation (selector mIoU vs the samples' masks)</h3>"
            + _preservation_table(preserved)
        )
    return note(
        "Pass rates of each arm's evaluation samples (selector: score ≥ h; oracle: toy data only)."
    ) + "".join(parts)


def _preservation_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One row per arm and seed: base and aligned mIoU and the change with its bootstrap interval."""
    body = []
    for where, block in rows:
        change = block.get("change") or {}
        wording, tone = ci_reading(change.get("difference"), change.get("ci95"))
        interval = change.get("ci95")
        body.append(
            [
                text(where),
                pct((block.get("base") or {}).get("miou")),
                pct((block.get("aligned") or {}).get("miou")),
                f"{change['difference'] * 100:+.1f}"
                if change.get("difference") is not None
                else "—",
                f"[{interval[0] * 100:+.1f}, {interval[1] * 100:+.1f}]" if interval else "—",
                verdict_span(wording, tone) if change else "—",
            ]
        )
    return table(
        ("arm, seed", "base", "aligned", "aligned − base (points)", "95 % CI", "reading"),
        body,
        text_columns=(0, 5),
    )


def runs(study: StudyData, registry: Any = None) -> str:
    """Every distinct run of the study, collapsed; runs shared by several arms appear once."""
    used: dict[str, list[str]] = {}
    for arm in _arms(study):
        for seed, path in (arm.get("runs") or {}).items():
            used.setdefault(str(path), []).append(f"{arm.get('name')} (seed {seed})")
    if not used:
        return not_available("study.json names no runs")
    datasets: dict[str, Any] = {}
    parts = []
    for k, (recorded, arms) in enumerate(used.items()):
        label = f"{recorded} — {', '.join(arms)}"
        path = study.run_path(recorded)
        if isinstance(path, Missing):
            parts.append(details(label, not_available(path.reason), css_class="run"))
            continue
        try:
            run = load_run(path, registry=registry, dataset_cache=datasets)
        except SaadiError as exc:  # one unreadable run must not hide the others
            parts.append(details(label, not_available(str(exc)), css_class="run"))
            continue
        body = "".join(
            section(s.anchor, s.title, s.body, level=3)
            for s in run_sections(run, prefix=f"run{k}-", compact=True)
        )
        parts.append(details(label, body, css_class="run"))
    return note("Each run's own report, collapsed; click to open.") + "".join(parts)
