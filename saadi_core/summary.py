"""The end-of-run table: what changed between base and aligned, with its significance."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _pass_row(name: str, result: dict[str, Any] | None) -> list[str] | None:
    if not result:
        return None
    return [
        name,
        f"{result['base_rate']:.1%}",
        f"{result['aligned_rate']:.1%}",
        f"{result['difference_points']:+.1f} pts",
        f"{result['fail_to_pass']} / {result['pass_to_fail']}",
        f"{result['p_value']:.3g}",
        result["verdict"],
    ]


def print_summary(result: Any, console: Console) -> None:
    """Print pass rates (McNemar on the same seeds), what the lifecycle plugins add, downstream
    metrics and timings."""
    summary = result.summary
    where = " of unseen layouts" if summary.get("evaluation_conditions") == "unseen-layouts" else ""
    table = Table(title=f"base vs aligned on the same seeds{where} (exact McNemar)")
    for column in (
        "measure",
        "base",
        "aligned",
        "aligned − base",
        "fail→pass / pass→fail",
        "p",
        "verdict",
    ):
        table.add_column(column)
    notes = []
    for name, key in (("selector pass rate", "selector_pass"), ("oracle pass rate", "oracle_pass")):
        row = _pass_row(name, summary.get(key))
        if row:
            table.add_row(*row)
        by_condition = (summary.get(key) or {}).get("by_condition")
        if by_condition:
            low, high = by_condition["ci95"]
            notes.append(
                f"{name} over the {by_condition['n_conditions']} conditions (samples of one mask are not "
                f"independent): {by_condition['difference_points']:+.1f} pts [{low:+.1f}, {high:+.1f}], "
                f"p {by_condition['p_value']:.3g} (paired t) — the verdict above"
            )
    if summary.get("selector_pass"):
        console.print(table)
        for note in notes:
            console.print(note)
        if (summary.get("alignment") or {}).get("aligned_equals_base"):
            console.print(
                "[yellow]aligned = base[/]: validation kept the base model (no alignment step improved the "
                "held-out validation metric), so 'aligned' above is the base generator again"
            )
    else:  # a base-only run (aligner: null): its pass rates, nothing to compare
        base = (summary.get("pass_rates") or {}).get("base") or {}
        oracle = (
            f", oracle {base['oracle_rate']:.1%}" if base.get("oracle_rate") is not None else ""
        )
        if base:
            console.print(
                f"base samples{where} (no alignment): selector pass {base['selector_rate']:.1%}{oracle} of {base['n']}"
            )

    # label preservation, fidelity and any plugin's figures (saadi_terminal_summary)
    if result.session is not None:
        from saadi_core.lifecycle import terminal_summary

        terminal_summary(result.session.registry, summary, console.print)

    downstream = summary.get("downstream") or {}
    if any(isinstance(value, dict) for value in downstream.values()):
        metric = downstream.get("metric", "")
        dtable = Table(title=f"downstream {metric} on the real test split")
        dtable.add_column("training data")
        dtable.add_column(f"{metric} (mean ± std)")
        dtable.add_column("seeds")
        dtable.add_column("− real, 95 % CI (paired by seed)")
        for variant, value in downstream.items():
            if isinstance(value, dict):
                versus = value.get("vs_real")
                if versus and versus["ci95"]:
                    low, high = versus["ci95"]
                    text = f"{versus['difference']:+.3f} [{low:+.3f}, {high:+.3f}]: {versus['verdict']}"
                else:
                    text = "—"
                dtable.add_row(
                    variant,
                    f"{value['mean']:.3f} ± {value['std']:.3f}",
                    str(value["n_seeds"]),
                    text,
                )
        console.print(dtable)
        n_seeds = max((v["n_seeds"] for v in downstream.values() if isinstance(v, dict)), default=0)
        if n_seeds < 3:
            console.print(
                f"[dim]downstream differences over {n_seeds} seed(s) are not tested for significance; use ≥ 3 seeds (evaluation.downstream_seeds).[/]"
            )

    if summary.get("dpo_implicit_accuracy") is not None:
        console.print(
            f"DPO implicit accuracy (last step): {summary['dpo_implicit_accuracy']:.2f} — not evidence of improvement by itself"
        )
    for warning in summary.get("warnings") or []:
        console.print(f"[yellow]warning[/]: {warning}")
    timings = summary.get("timings_s") or {}
    console.print(
        "stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items() if v is not None)
    )
    console.print(f"results: {summary['run']}/summary.json")


def label_preservation_line(preserved: dict[str, Any]) -> str:
    """One line: the selector's mIoU against the masks the samples carry, per variant, and the
    aligned − base change with its bootstrap interval when there is one."""
    variants = ", ".join(
        f"{v} {preserved[v]['miou']:.1%}" for v in ("base", "aligned") if v in preserved
    )
    line = f"label preservation (selector mIoU vs the samples' masks): {variants}"
    change = preserved.get("change")
    if change:
        interval = change["ci95"]
        bounds = f" [{interval[0] * 100:+.1f}, {interval[1] * 100:+.1f}]" if interval else ""
        line += f"; aligned − base {change['difference'] * 100:+.1f} pts{bounds} (95 % paired bootstrap): {change['verdict']}"
    return line


def print_study(result: Any, console: Console) -> None:
    """Print the study's downstream table (mean ± std over seeds), its comparisons and the
    evidence table."""
    summary = result.summary
    if summary.get("real_only") is not None:
        _print_downstream(summary, console)
    else:
        console.print(
            "no downstream models (downstream_seeds: 0): the arms compare on their samples"
        )
    if summary.get("evidence"):
        from saadi_core.evidence import evidence_lines

        runs = {
            arm["name"]: list(arm["runs"].values())
            for arm in summary["arms"]
            if arm.get("mix") is None
        }
        columns, rows = evidence_lines(summary["evidence"], runs)
        etable = Table(
            title="evidence: arms vs base, filter and control; oracle paired by sample, downstream "
            "by (seed, downstream seed)"
        )
        for column in columns:
            etable.add_column(column)
        for row in rows:
            etable.add_row(*row)
        console.print(etable)
    console.print(f"results: {result.root}/study.json")


def _print_downstream(summary: dict[str, Any], console: Console) -> None:
    metric = summary["metric"]
    table = Table(
        title=f"{summary['name']}: {metric}, real test split (mean ± std, {len(summary['seeds'])} seeds)"
    )
    table.add_column("arm")
    for scale in summary["scales"]:
        table.add_column(f"{scale:g}× synthetic")
    real = summary["real_only"]
    table.add_row(
        "real only", *[f"{real['mean']:.3f} ± {real['std']:.3f}"] * len(summary["scales"])
    )
    for arm in summary["arms"]:
        cells = [arm["downstream"][f"{scale:g}"] for scale in summary["scales"]]
        table.add_row(arm["name"], *[f"{c['mean']:.3f} ± {c['std']:.3f}" for c in cells])
    console.print(table)
    ctable = Table(title="arm − real only, paired by seed (95 % t interval)")
    for column in ("arm", "scale", "difference", "95 % CI", "verdict"):
        ctable.add_column(column)
    for c in summary["comparisons"]:
        interval = f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]" if c["ci95"] else "—"
        ctable.add_row(
            c["arm"], f"{c['scale']:g}×", f"{c['difference']:+.3f}", interval, c["verdict"]
        )
    console.print(ctable)
