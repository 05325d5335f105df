"""An example third-party *metric*: the RMS contrast of generated images.

RMS contrast is the standard deviation of an image's grey levels (in [0, 1]). A generator that
washes its images out — a known failure of over-aligned diffusion models — lowers it; one that
saturates raises it. The figure is per sample, so base and aligned samples (same seeds and
conditions) are compared pairwise with the core's paired bootstrap over conditions.

This module does the work (it imports numpy and torch); ``plugin.py`` only wires it to saadi's
lifecycle hooks and imports it when a hook is called."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: the key of this metric in the evaluate stage's outputs and in summary.json
KEY = "example_contrast"


def rms_contrast(images: Any) -> Any:
    """``(N,)`` RMS contrast of ``(N, 3, H, W)`` images in [-1, 1] (the saadi sample range)."""
    grey = (images.float().mean(dim=1) + 1.0) / 2.0
    return grey.flatten(1).std(dim=1, unbiased=False).numpy()


def evaluate(samples: dict[str, Sequence[Any]], seed: int) -> dict[str, Any]:
    """Mean contrast per variant and, with an aligned variant paired to base, aligned − base
    with a 95 % paired bootstrap interval."""
    import torch

    from saadi_core.evaluation.samples import paired_groups
    from saadi_core.evaluation.stats import paired_bootstrap

    values = {
        v: rms_contrast(torch.stack([s.image for s in loaded])) for v, loaded in samples.items()
    }
    result: dict[str, Any] = {
        v: {"mean": float(c.mean()), "n": int(c.size)} for v, c in values.items()
    }
    if "base" in samples and "aligned" in samples:
        groups = paired_groups(samples["base"], samples["aligned"])
        if groups is not None:
            base, aligned = values["base"], values["aligned"]
            change = paired_bootstrap(
                groups,
                lambda rows: float(base[rows].mean()),
                lambda rows: float(aligned[rows].mean()),
                seed=seed,
            )
            result["change"] = {k: change[k] for k in ("difference", "ci95", "verdict")}
    return result


def line(entry: dict[str, Any]) -> str:
    """The end-of-run line."""
    variants = ", ".join(f"{v} {entry[v]['mean']:.4f}" for v in ("base", "aligned") if v in entry)
    out = f"example contrast (RMS grey level): {variants}"
    change = entry.get("change")
    if change:
        interval = change["ci95"]
        bounds = f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
        out += f"; aligned − base {change['difference']:+.4f}{bounds} (95 % paired bootstrap): {change['verdict']}"
    return out


def section(entry: dict[str, Any]) -> str:
    """The report section's HTML (every value escaped by saadi's markup helpers)."""
    from saadi_core.report.markup import fmt, note, table, text

    rows = [
        [text(v), fmt(entry[v]["mean"], 4), text(entry[v]["n"])]
        for v in ("base", "aligned")
        if v in entry
    ]
    body = table(["variant", "RMS contrast (mean)", "samples"], rows)
    change = entry.get("change")
    if change:
        interval = change["ci95"]
        bounds = f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
        body += note(
            f"aligned − base {change['difference']:+.4f}{bounds} (95 % paired bootstrap): {change['verdict']}"
        )
    return body
