"""The sections of one run's report, each built from the run directory alone.

Every builder returns HTML; a builder whose inputs are missing returns a "not available" line
with the reason. :func:`run_sections` additionally guards each builder, so a malformed artefact
costs its own section, never the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from saadi_core.evaluation.conditions import UNSEEN
from saadi_core.report import figures, images
from saadi_core.report.data import Missing, RunData, Variant
from saadi_core.report.markup import (
    details,
    figure,
    fmt,
    img,
    mean_std,
    not_available,
    note,
    pretty_json,
    side_by_side,
    table,
    text,
    verdict_span,
    warning,
)
from saadi_core.report.wording import ci_reading, mcnemar_reading
from saadi_core.stages.names import ALIGN, EVALUATE, PAIR, SCORE, TRAIN_SELECTOR, sample_stage

#: how many conditions (rows) and base/aligned pairs per condition the sample grid shows
MAX_GROUPS = 8
PER_GROUP = 5
#: closest memorisation pairs shown per variant
MAX_MEMORISATION_PAIRS = 8

#: (anchor suffix, heading) of every run section, in page order
RUN_SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Run overview"),
    ("samples", "Samples: base vs aligned (same seeds)"),
    ("histograms", "Score histograms"),
    ("pass-rates", "Pass rates: base vs aligned"),
    ("diagnostics", "Score diagnostics and pairs"),
    ("dpo", "DPO curves"),
    ("downstream", "Downstream results"),
    ("fidelity", "Fidelity metrics"),
    ("memorisation", "Memorisation check"),
    ("config", "Config and versions"),
)


@dataclass
class Section:
    anchor: str
    title: str
    body: str


def run_sections(run: RunData, prefix: str = "", compact: bool = False) -> list[Section]:
    """All run sections in page order; anchors get ``prefix`` (unique ids inside a study page).
    ``compact`` shows fewer sample cards (a study page holds many runs)."""
    groups, per_group = (4, 4) if compact else (MAX_GROUPS, PER_GROUP)
    builders: dict[str, Callable[[RunData], str]] = {
        "overview": overview,
        "samples": lambda r: samples(r, groups, per_group),
        "histograms": histograms,
        "pass-rates": pass_rates,
        "diagnostics": diagnostics,
        "dpo": dpo,
        "downstream": downstream,
        "fidelity": fidelity,
        "memorisation": memorisation,
        "config": config,
    }
    out = []
    for anchor, title in RUN_SECTIONS:
        try:
            body = builders[anchor](run)
        except Exception as exc:  # a malformed artefact must cost one section, not the report
            body = not_available(
                f"could not render this section from the run's files ({type(exc).__name__}: {exc})"
            )
        out.append(Section(prefix + anchor, title, body))
    plugin_sections = [
        Section(prefix + anchor, title, body) for anchor, title, body in _plugin_sections(run)
    ]
    return out[:-1] + plugin_sections + out[-1:]  # before "Config and versions"


def _plugin_sections(run: RunData) -> list[tuple[str, str, str]]:
    """What plugins add to a run page (``saadi_report_sections``)."""
    from saadi_core.lifecycle import report_sections

    registry = run.registry
    if registry is None:
        from saadi_core.registry import get_registry

        registry = get_registry()
    return report_sections(registry, run)


# --------------------------------------------------------------------------- helpers


def _outputs(run: RunData, stage: str) -> dict[str, Any] | Missing:
    """A finished stage's reported outputs (``stage.json``), present even if the run stopped later."""
    meta = run.stage_json(stage, "stage.json")
    return meta if isinstance(meta, Missing) else meta.get("outputs") or {}


def _threshold(run: RunData, *variants: Variant) -> float | None:
    """The pairing threshold h: as recorded with the evaluation scores, else the pair stage's, else
    the config's."""
    for v in variants:
        if isinstance(v.scores, dict) and v.scores.get("threshold") is not None:
            return float(v.scores["threshold"])
    pair = _outputs(run, PAIR)
    if isinstance(pair, dict) and pair.get("threshold") is not None:
        return float(pair["threshold"])
    options = ((run.manifest.get("config") or {}).get("pairing") or {}).get("options") or {}
    return float(options["threshold"]) if "threshold" in options else None


def _kv_table(data: dict[str, Any], header: tuple[str, str] = ("", "value")) -> str:
    """Scalar entries as rows; lists/dicts are summarised by their length."""
    rows = []
    for key, value in data.items():
        if isinstance(value, (list, dict)):
            value = f"{len(value)} entries"
        rows.append([text(key), fmt(value)])
    return table(header, rows)


def _group(sample: Any) -> str:
    c = sample.condition
    return c.class_name if c.class_name else c.id


def _sample_key(sample: Any) -> tuple[str, int, int]:
    return (sample.condition.id, int(sample.seed), int(sample.index))


def _mark(scores: dict[str, Any] | Missing, i: int) -> tuple[str, str]:
    """``(css class, caption)`` of sample ``i`` from its variant's ``scores.json``."""
    if not isinstance(scores, dict):
        return "", ""
    passed = scores.get("selector") or []
    values = scores.get("scores") or []
    oracle = scores.get("oracle")
    css = ("pass" if passed[i] else "fail") if i < len(passed) else ""
    caption = ("✓ " if css == "pass" else "✗ " if css == "fail" else "") + (
        f"{values[i]:.2f}" if i < len(values) else ""
    )
    if oracle is not None and i < len(oracle):
        caption += " · oracle " + ("✓" if oracle[i] else "✗")
    return css, caption


def _rate(flags: list[bool]) -> str:
    return f"{np.mean(flags):.0%} ({sum(flags)}/{len(flags)})" if flags else "—"


# --------------------------------------------------------------------------- sections


def overview(run: RunData) -> str:
    config = run.manifest.get("config") or {}
    dataset = run.manifest.get("dataset") or {}
    facts = {
        "directory": str(run.root),
        "created": run.manifest.get("created"),
        "updated": run.manifest.get("updated"),
        "profile": config.get("profile"),
        "task": run.task,
        "dataset": dataset.get("source") or (config.get("dataset") or {}).get("kind"),
        "classes": ", ".join(run.class_names) or None,
    }
    about = "<h3>Run</h3>" + table(
        ("", "value"),
        [[text(k), text(v) if v is not None else "—"] for k, v in facts.items()],
        text_columns=(0, 1),
    )
    slots = [
        (slot, spec.get("kind"))
        for slot, spec in config.items()
        if isinstance(spec, dict) and "kind" in spec
    ]
    components = (
        "<h3>Components</h3>"
        + table(("slot", "kind"), [[text(s), text(k)] for s, k in slots], text_columns=(0, 1))
        if slots
        else ""
    )
    parts = [side_by_side(about, components)]
    stages = run.manifest.get("stages") or {}
    rows = [
        [
            text(name),
            text(s.get("status", "?")),
            fmt(s.get("seconds")),
            fmt(bool(s.get("cached"))),
            text(s.get("path") or ""),
        ]
        for name, s in stages.items()
    ]
    parts.append(
        "<h3>Stages</h3>"
        + table(("stage", "status", "seconds", "cached", "directory"), rows, text_columns=(0, 1, 4))
    )
    if isinstance(run.summary, Missing):
        parts.append(
            note(
                f"{run.summary.reason} (the run has not finished): the sections below show the stages that did."
            )
        )
    return "".join(parts)


def _evaluated(run: RunData) -> tuple[list[Variant], list[str]]:
    """The evaluation variants present (base, and aligned when the run has an aligner) and notes
    on those that are not."""
    present, notes = [], []
    for name in ("base", "aligned"):
        v = run.variant(name)
        if not isinstance(v.samples, Missing):
            present.append(v)
        elif name == "aligned" and not run.aligned:
            notes.append("the run has no aligner (a base-only run): base samples only")
        else:
            notes.append(f"{name} evaluation samples not available: {v.samples.reason}")
    return present, notes


def samples(run: RunData, max_groups: int = MAX_GROUPS, per_group: int = PER_GROUP) -> str:
    variants, missing = _evaluated(run)
    if not variants:
        return not_available("; ".join(missing))
    first, others = variants[0], variants[1:]
    lookups = [{_sample_key(s): j for j, s in enumerate(v.samples)} for v in others]
    rows = [
        (i, *(lookup[_sample_key(s)] for lookup in lookups))
        for i, s in enumerate(first.samples)
        if all(_sample_key(s) in lookup for lookup in lookups)
    ]
    if not rows:
        return not_available(
            "base and aligned evaluation samples share no (condition, seed): they were not drawn "
            "from the same seeds"
        )
    groups: dict[str, list[tuple[int, ...]]] = {}
    for row in rows:
        groups.setdefault(_group(first.samples[row[0]]), []).append(row)

    names = " and ".join(v.name for v in variants)
    parts = [_per_group_pass_table(groups, variants)]
    parts.append(
        '<p class="legend">'
        + (
            "Each card: left = base, right = aligned, generated from the same seed and condition. "
            if others
            else f"Each card: a {names} sample. "
        )
        + "Frame: selector pass (green, score ≥ h) or fail (red); below: the selector score and, on"
        " toy data, the oracle's verdict."
        + (
            " Coloured lines: the outline of the sample's mask."
            if first.samples[0].mask is not None
            else ""
        )
        + "</p>"
    )
    parts.extend(note(m) for m in missing)
    for v in variants:
        if isinstance(v.scores, Missing):
            parts.append(
                note(
                    f"no pass/fail marks for {v.name}: {v.scores.reason} (older runs did not save per-sample scores)"
                )
            )
    shown = list(groups.items())[:max_groups]
    if len(groups) > max_groups:
        parts.append(
            note(
                f"showing the first {max_groups} of {len(groups)} conditions, up to {per_group} seeds each"
            )
        )
    for name, group in shown:
        cards = []
        head = first.samples[group[0][0]]
        if head.mask is not None and head.condition.mask is not None:
            cards.append(
                f'<div class="pair">{img(images.mask_thumbnail(head.mask), "condition mask", "thumb")}<div>mask</div></div>'
            )
        for row in group[:per_group]:
            sides = []
            for v, k in zip(variants, row):
                s = v.samples[k]
                css, caption = _mark(v.scores, k)
                picture = img(
                    images.thumbnail(s.image, s.mask),
                    f"{v.name} sample {name} seed {s.seed} #{s.index}",
                    f"side {css}".strip(),
                    title=caption,
                )
                sides.append(f"<div>{picture}<div>{text(v.name)} {text(caption)}</div></div>")
            s = first.samples[row[0]]
            cards.append(
                f'<div class="pair"><div class="sides">{"".join(sides)}</div><div>seed {s.seed} · #{s.index}</div></div>'
            )
        parts.append(f'<h3>{text(name)}</h3><div class="grid">{"".join(cards)}</div>')
    return "".join(parts)


def _per_group_pass_table(groups: dict[str, list[tuple[int, ...]]], variants: list[Variant]) -> str:
    if not all(isinstance(v.scores, dict) for v in variants):
        return ""
    keys = ["selector"] + (
        ["oracle"] if all(v.scores.get("oracle") is not None for v in variants) else []
    )
    header = ["condition", "n", *(f"{key} pass: {v.name}" for key in keys for v in variants)]
    rows = []
    for name, group in groups.items():
        row = [text(name), str(len(group))]
        for key in keys:
            row += [
                _rate([bool(v.scores[key][r[k]]) for r in group]) for k, v in enumerate(variants)
            ]
        rows.append(row)
    return table(header, rows, caption="pass rates per condition (all evaluation samples)")


def histograms(run: RunData) -> str:
    variants, _ = _evaluated(run)
    h = _threshold(run, *variants)
    parts = []
    scored = [v for v in variants if isinstance(v.scores, dict)]
    if scored:
        title = (
            "evaluation samples (same seeds)"
            if len(scored) > 1
            else f"{scored[0].name} evaluation samples"
        )
        png = figures.score_histogram({v.name: v.scores["scores"] for v in scored}, h, title)
        caption = "Selector scores of the evaluation samples"
        caption += " before (base) and after (aligned) alignment" if len(scored) > 1 else ""
        parts.append(figure(png, "evaluation score histogram", caption + "; the dashed line is h."))
    for v in variants:
        if isinstance(v.scores, Missing):
            parts.append(
                not_available(
                    f"{v.name} score histogram: {v.scores.reason} (older runs did not save per-sample scores)"
                )
            )
    if not variants:
        parts.append(not_available("evaluation score histogram: the run has no evaluation samples"))
    pool = run.stage_json(SCORE, "scores.json")
    if isinstance(pool, Missing):
        parts.append(not_available(f"pool score histogram: {pool.reason}"))
    else:
        png = figures.score_histogram(
            {"pool": pool["scores"]}, h, "generated pool (preference pairs come from here)"
        )
        parts.append(
            figure(
                png,
                "pool score histogram",
                "Selector scores of the base generator's pool: winners are right of h, losers left of it.",
            )
        )
    return "".join(parts)


def pass_rates(run: RunData) -> str:
    outputs = _outputs(run, EVALUATE)
    if isinstance(outputs, Missing):
        return not_available(outputs.reason)
    parts = []
    rates = {
        k: v
        for k, v in outputs.items()
        if k in ("base", "aligned") and isinstance(v, dict) and "selector_rate" in v
    }
    if rates:
        parts.append(variant_rates_table(rates))
    blocks = [
        (label, outputs.get(key))
        for label, key in (
            ("selector pass rate", "selector_pass"),
            ("oracle pass rate", "oracle_pass"),
        )
    ]
    blocks = [(label, b) for label, b in blocks if b]
    if blocks:
        parts.append("<h3>Paired test on the same seeds</h3>" + pass_rate_table(blocks))
        parts.extend(f"<p>{pass_rate_sentence(label, b)}</p>" for label, b in blocks)
        parts.append(
            note(
                "Base and aligned samples come from the same seeds and conditions, so each sample"
                " is a paired "
                "outcome; the exact McNemar test uses only the flips. p ≥ 0.05 means the "
                "difference is within noise."
            )
        )
    elif not rates:
        return not_available("the evaluate stage recorded no pass rates")
    else:
        parts.append(note("No aligned variant: nothing to compare the base pass rates with."))
    base_samples = _outputs(run, sample_stage("base"))
    if not isinstance(base_samples, Missing) and base_samples.get("conditions") == UNSEEN:
        parts.append(
            note(
                "The evaluation samples were generated on the dataset's unseen layouts — masks no"
                " model trained on — so no sample passes by reproducing a training image."
            )
        )
    if outputs.get("label_preservation"):
        parts.append(label_preservation_table(outputs["label_preservation"]))
    return "".join(parts)


def label_preservation_table(preserved: dict[str, Any]) -> str:
    """Selector mIoU against the masks the samples carry, per variant and class, with the
    aligned − base change and its bootstrap interval."""
    variants = [v for v in ("base", "aligned") if v in preserved]
    classes = list(dict.fromkeys(c for v in variants for c in preserved[v]["per_class_iou"]))
    rows = [
        [text(v), pct(preserved[v]["miou"]), pct(preserved[v]["miou_foreground"])]
        + [pct(preserved[v]["per_class_iou"].get(c)) for c in classes]
        for v in variants
    ]
    parts = [
        "<h3>Label preservation</h3>",
        table(("variant", "mIoU", "mIoU (foreground)", *(f"IoU {c}" for c in classes)), rows),
    ]
    change = preserved.get("change")
    if change:
        wording, tone = ci_reading(change.get("difference"), change.get("ci95"))
        low, high = change["ci95"] or (None, None)
        interval = f" [{low * 100:+.1f}, {high * 100:+.1f}]" if low is not None else ""
        parts.append(
            f"<p>mIoU aligned − base: {change['difference'] * 100:+.1f} points{interval} "
            f"({text(change['method'])}): {verdict_span(wording, tone)}.</p>"
        )
    parts.append(
        note(
            "The run's selector segments each sample; IoU against the mask the sample carries "
            "(its simulator label, inpainting mask or own mask), summed over the set, averaged over "
            "the classes the masks show. It measures whether the images still show their labels "
            "in the selector's eyes (SimuScope's label preservation)."
        )
    )
    return "".join(parts)


def variant_rates_table(rates: dict[str, dict[str, Any]]) -> str:
    """Pass rates of each evaluated variant on its own (``n``, ``mean_score``, ``selector_rate``,
    ``oracle_rate``)."""
    rows = [
        [
            text(name),
            fmt(r.get("n")),
            fmt(r.get("mean_score")),
            pct(r.get("selector_rate")),
            pct(r.get("oracle_rate")),
        ]
        for name, r in rates.items()
    ]
    return table(
        ("variant", "n", "mean selector score", "selector pass rate", "oracle pass rate"), rows
    )


def pass_rate_table(blocks: list[tuple[str, dict[str, Any]]]) -> str:
    rows = []
    for label, b in blocks:
        wording, tone = mcnemar_reading(b)
        rows.append(
            [
                text(label),
                fmt(b.get("n")),
                pct(b.get("base_rate")),
                pct(b.get("aligned_rate")),
                f"{b['difference_points']:+.1f}" if b.get("difference_points") is not None else "—",
                fmt(b.get("fail_to_pass")),
                fmt(b.get("pass_to_fail")),
                fmt(b.get("p_value"), 3),
                _over_conditions(b),
                verdict_span(wording, tone),
            ]
        )
    header = (
        "measure",
        "n",
        "base",
        "aligned",
        "aligned − base (points)",
        "fail→pass",
        "pass→fail",
        "McNemar p",
        "over conditions: change [95 % CI], p",
        "reading",
    )
    return table(header, rows, text_columns=(0, 8, 9))


def _over_conditions(b: dict[str, Any]) -> str:
    """The condition-level test of a pass-rate block (samples of one mask are not independent),
    or a dash when there are too few conditions for one."""
    c = b.get("by_condition")
    if not c:
        return "—"
    low, high = c["ci95"]
    return (
        f"{c['difference_points']:+.1f} [{low:+.1f}, {high:+.1f}], p = {fmt(c['p_value'], 3)} "
        f"({c['n_conditions']} conditions)"
    )


def pass_rate_sentence(label: str, b: dict[str, Any]) -> str:
    wording, tone = mcnemar_reading(b)
    return (
        f"{text(label.capitalize())}: {pct(b.get('base_rate'))} → {pct(b.get('aligned_rate'))} "
        f"({b.get('fail_to_pass', '?')} fail→pass, {b.get('pass_to_fail', '?')} pass→fail, p = {fmt(b.get('p_value'), 3)}"
        + ("" if not b.get("by_condition") else f"; over conditions {_over_conditions(b)}")
        + "): "
        + verdict_span(wording, tone)
        + "."
    )


def pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "—"


def diagnostics(run: RunData) -> str:
    parts, blocks = [], []
    diag = _outputs(run, SCORE)
    if isinstance(diag, Missing):
        parts.append(not_available(f"score diagnostics: {diag.reason}"))
    else:
        warnings = diag.get("warnings") or []
        parts.append(
            "".join(warning(w) for w in warnings)
            if warnings
            else note("no warnings from the score diagnostics")
        )
        blocks.append(
            "<h3>Pool scores</h3>"
            + _kv_table({k: v for k, v in diag.items() if k != "warnings"}, ("statistic", "value"))
        )
    pairs = _outputs(run, PAIR)
    if isinstance(pairs, Missing):
        parts.append(not_available(f"pair statistics: {pairs.reason}"))
    else:
        blocks.append("<h3>Preference pairs</h3>" + _kv_table(pairs, ("statistic", "value")))
    selector = _outputs(run, TRAIN_SELECTOR)
    if isinstance(selector, dict) and isinstance(selector.get("test"), dict):
        test = selector["test"]
        per_class = next(
            (v for k, v in test.items() if k.startswith("per_class") and isinstance(v, dict)), {}
        )
        block = "<h3>Selector on the real test split</h3>" + _kv_table(
            {k: v for k, v in test.items() if not isinstance(v, dict)}
        )
        if per_class:
            block += table(["class", "score"], [[text(c), fmt(v)] for c, v in per_class.items()])
        blocks.append(block)
    parts.append(side_by_side(*blocks))
    if isinstance(diag, dict) and "selector_oracle_agreement" in diag:
        parts.append(
            note(
                "selector_oracle_agreement: share of pool samples where the selector's pass/fail "
                "(score ≥ h) equals the oracle's; low agreement means the selector's preference "
                "is not what the images truly show."
            )
        )
    return "".join(parts)


#: per-step DPO training metrics plotted (other per-step fields such as grad-norm stay in the JSON)
TRAIN_METRICS = ("loss", "implicit_accuracy", "reward_margin")


def _history_series(
    history: list[dict[str, Any]],
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]]:
    """Split the aligner history into training metrics and held-out validation metrics: a
    training step carries ``loss`` (or ``event: dpo_step``); any other entry is a validation."""
    train: dict[str, list[tuple[float, float]]] = {}
    validation: dict[str, list[tuple[float, float]]] = {}
    skip = {"step", "round", "part", "event", *TRAIN_METRICS}
    for entry in history:
        step = entry.get("step")
        if not isinstance(step, (int, float)):
            continue
        # iterative rounds and sequence parts each restart at step 0: plot them apart (a part
        # that is itself iterative carries both)
        suffix = "".join(f" {key} {entry[key]}" for key in ("part", "round") if key in entry)
        for metric in TRAIN_METRICS:
            if isinstance(entry.get(metric), (int, float)):
                train.setdefault(metric + (" @" + suffix if suffix else ""), []).append(
                    (step, float(entry[metric]))
                )
        if "loss" in entry or entry.get("event") == "dpo_step":
            continue
        for key, value in entry.items():
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                validation.setdefault(key + suffix, []).append((step, float(value)))
    return train, validation


def dpo(run: RunData) -> str:
    data = run.stage_json(ALIGN, "history.json")
    if isinstance(data, Missing):
        return not_available(data.reason)
    history, meta = data.get("history") or [], data.get("meta") or {}
    train, validation = _history_series(history)
    parts = []
    if train or validation:
        best = meta.get("best_step") if isinstance(meta.get("best_step"), (int, float)) else None
        png = figures.dpo_curves(train, validation, best)
        caption = (
            "Diffusion-DPO training: loss starts at ln 2 (LoRA B = 0); implicit accuracy = share of "
            "pairs the model prefers like the selector; validation metrics on held-out seeds."
        )
        if best is not None:
            caption += f" Green dashed line: the kept checkpoint (step {best:g})."
        parts.append(figure(png, "DPO curves", caption))
        parts.append(
            note(
                "Rising implicit accuracy alone is not evidence of improvement (the toy probe saw"
                " it reach 0.8 while the oracle pass rate collapsed): read it with the validation"
                " curve and the pass-rate test."
            )
        )
    else:
        parts.append(not_available("the aligner recorded no step metrics"))
    scalars = {k: v for k, v in meta.items() if not isinstance(v, (dict, list))}
    if scalars:
        parts.append("<h3>Alignment summary</h3>" + _kv_table(scalars))
    nested = {k: v for k, v in meta.items() if isinstance(v, (dict, list))}
    if nested:
        parts.append(details("alignment details (JSON)", pretty_json(nested)))
    return "".join(parts)


def _variant_order(name: str) -> tuple[int, float, int, str]:
    """``real`` first, then by scale, base before aligned at each scale."""
    if name == "real":
        return (0, 0.0, 0, name)
    label, _, scale = name.partition("@")
    try:
        value = float(scale.rstrip("x"))
    except ValueError:
        value = 0.0
    return (1, value, {"real+base": 0, "real+aligned": 1}.get(label, 2), label)


def downstream(run: RunData) -> str:
    by_seed = run.artefact("downstream.json", "downstream")
    if isinstance(by_seed, Missing):
        return not_available(by_seed.reason)
    metric = "macro_f1" if run.task == "classification" else "mean_dice"
    variants = sorted({v for results in by_seed.values() for v in results}, key=_variant_order)
    rows, classes, per_class_rows = [], [], []
    for variant in variants:
        results = [r[variant] for r in by_seed.values() if variant in r]
        values = [r[metric] for r in results if isinstance(r.get(metric), (int, float))]
        rows.append([text(variant), mean_std(_agg(values)), str(len(values))])
        per_class = [
            next((v for k, v in r.items() if k.startswith("per_class") and isinstance(v, dict)), {})
            for r in results
        ]
        if not classes and per_class and per_class[0]:
            classes = list(per_class[0])
        per_class_rows.append(
            [text(variant)] + [mean_std(_agg([pc.get(c) for pc in per_class])) for c in classes]
        )
    parts = [table(("variant", f"{metric} (mean ± std over seeds)", "seeds"), rows)]
    if classes:
        parts.append("<h3>Per class</h3>" + table(["variant", *classes], per_class_rows))
    if len(by_seed) < 2:
        parts.append(
            note(
                "One downstream seed: differences between variants are not tested for "
                "significance; a study with ≥ 3 seeds reports mean ± std and confidence "
                "intervals."
            )
        )
    parts.append(
        note(
            "Real test split; 'real+aligned@2x' = real training data plus aligned samples twice "
            "the real training size."
        )
    )
    return "".join(parts)


def _agg(values: list[Any]) -> dict[str, float] | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    if not nums:
        return None
    return (
        {"mean": float(np.mean(nums)), "std": float(np.std(nums))}
        if len(nums) > 1
        else {"mean": nums[0], "std": None}
    )


def fidelity(run: RunData) -> str:
    data = run.artefact("fidelity.json")
    if isinstance(data, Missing):
        return not_available(data.reason)
    variants = data.get("variants") or {}
    if not variants:
        return not_available("no fidelity metric was computed") + "".join(
            note(str(n)) for n in data.get("notes") or []
        )
    parts = []
    extractor = data.get("feature_extractor") or {}
    label = extractor.get("label") or extractor.get("name")
    if label:
        parts.append(f"<p><strong>Feature extractor:</strong> {text(label)}</p>")
        if "inception" not in str(extractor.get("name", "")).lower():
            parts.append(
                note(
                    "FID/KID here are computed on this extractor's features, not Inception's: "
                    "compare them only with other runs that use the same extractor, never with "
                    "published FID values."
                )
            )
    else:
        parts.append(
            warning(
                "fidelity.json does not name its feature extractor; FID/KID values cannot be interpreted"
            )
        )
    columns = [
        ("fid", "FID ↓"),
        ("kid", "KID ↓"),
        ("ms_ssim", "MS-SSIM"),
        ("psnr", "PSNR (dB)"),
        ("diversity_ms_ssim", "diversity MS-SSIM ↓"),
    ]
    present = {key for v in variants.values() for key in v} | (
        {"kid"} if any("kid_mean" in v for v in variants.values()) else set()
    )
    columns = [(k, h) for k, h in columns if k in present]
    rows = []
    for name, v in variants.items():
        cells = [text(name)]
        for key, _ in columns:
            cells.append(
                f"{fmt(v.get('kid_mean'), 4)} ± {fmt(v.get('kid_std'), 4)}"
                if key == "kid"
                else fmt(v.get(key))
            )
        rows.append(cells)
    parts.append(table(["variant", *(h for _, h in columns)], rows))
    if data.get("comparison"):
        parts.append(fidelity_comparison_table(data["comparison"]))
    per_class = {name: v.get("per_class") for name, v in variants.items() if v.get("per_class")}
    if per_class:
        names = list(per_class)
        classes = list(dict.fromkeys(c for pc in per_class.values() for c in pc))
        header = ["class"] + [
            f"{n} {m}" for n in names for m in ("FID", "KID", "n real / synthetic")
        ]
        rows = []
        for c in classes:
            cells = [text(c)]
            for n in names:
                e = per_class[n].get(c) or {}
                cells += [
                    fmt(e.get("fid")),
                    f"{fmt(e.get('kid_mean'), 4)} ± {fmt(e.get('kid_std'), 4)}",
                    f"{fmt(e.get('n_real'))} / {fmt(e.get('n_synthetic'))}",
                ]
            rows.append(cells)
        parts.append(
            "<h3>Per class (class regions cropped by bounding box)</h3>" + table(header, rows)
        )
    for n in data.get("notes") or []:
        parts.append(note(str(n)))
    return "".join(parts)


def fidelity_comparison_table(comparison: dict[str, Any]) -> str:
    """Aligned − base of each compared fidelity value with its paired bootstrap interval; the
    reading comes from the interval and the value's direction (FID and KID: lower is better)."""
    rows = []
    for key, block in comparison.items():
        interval = block.get("ci95")
        verdict = str(block.get("verdict", "not tested"))
        tone = (
            "good"
            if verdict.startswith("better")
            else "bad"
            if verdict.startswith("worse")
            else "neutral"
        )
        rows.append(
            [
                text(key),
                fmt(block.get("base"), 4),
                fmt(block.get("aligned"), 4),
                fmt(block.get("difference"), 4),
                f"[{fmt(interval[0], 4)}, {fmt(interval[1], 4)}]" if interval else "—",
                verdict_span(verdict, tone),
            ]
        )
    return (
        "<h3>Aligned vs base (paired bootstrap)</h3>"
        + table(
            ("value", "base", "aligned", "aligned − base", "95 % CI", "reading"),
            rows,
            text_columns=(0, 5),
        )
        + note(
            "Both variants come from the same seeds and conditions; the real set stays fixed while "
            "conditions (10 or more) or samples within each condition are resampled. kid_whole_set "
            "is the unbiased MMD² on the whole sets (not the subset mean above). A difference whose "
            "interval contains 0 is no difference."
        )
    )


def memorisation(run: RunData) -> str:
    data = run.artefact("fidelity.json")
    if isinstance(data, Missing):
        return not_available(data.reason)
    memo = data.get("memorisation")
    if not memo:
        return not_available("fidelity.json has no memorisation section")
    parts = [
        note(
            "Distance from each synthetic image to its nearest real training image: a distance "
            "near 0 means the generator reproduced a training image. The closest pairs are shown:"
            " synthetic (left) and its nearest real image (right)."
        )
    ]
    stats_rows = []
    for name, m in memo.items():
        nd = m.get("nearest_distance") or {}
        stats_rows.append(
            [text(name), fmt(nd.get("mean")), fmt(nd.get("median")), fmt(nd.get("min"))]
        )
    parts.append(table(("variant", "mean nearest distance", "median", "min"), stats_rows))
    real = run.real_train
    if isinstance(real, Missing):
        parts.append(note(f"real images not shown: {real.reason}"))
    for name, m in memo.items():
        closest = (m.get("closest_pairs") or [])[:MAX_MEMORISATION_PAIRS]
        if not closest:
            continue
        synthetic = run.samples(EVALUATE, name)
        if isinstance(synthetic, Missing):
            parts.append(
                f"<h3>{text(name)}</h3>" + not_available(f"synthetic images: {synthetic.reason}")
            )
            continue
        cards = []
        for pair in closest:
            si, ri = int(pair["synthetic_index"]), int(pair["real_index"])
            sides = []
            if 0 <= si < len(synthetic):
                sides.append(
                    f"<div>{img(images.thumbnail(synthetic[si].image), f'synthetic {si}', 'side')}<div>synthetic #{si}</div></div>"
                )
            else:
                sides.append(f"<div>synthetic #{si} out of range</div>")
            if not isinstance(real, Missing):
                if 0 <= ri < len(real):
                    sides.append(
                        f"<div>{img(images.thumbnail(real.images[ri]), f'real {ri}', 'side')}<div>real #{ri}</div></div>"
                    )
                else:
                    sides.append(f"<div>real #{ri} out of range</div>")
            cards.append(
                f'<div class="pair"><div class="sides">{"".join(sides)}</div><div>distance {fmt(pair.get("distance"))}</div></div>'
            )
        parts.append(
            f'<h3>{text(name)}: closest pairs</h3><div class="grid">{"".join(cards)}</div>'
        )
    return "".join(parts)


def config(run: RunData) -> str:
    m = run.manifest
    parts = [
        "<h3>Config</h3>" + pretty_json(m.get("config") or {}),
        "<h3>Versions</h3>" + pretty_json(m.get("versions") or {}),
        "<h3>Seeds and dataset</h3>"
        + pretty_json({"seeds": m.get("seeds"), "dataset": m.get("dataset")}),
    ]
    return "".join(parts)
