"""Fidelity in the summary and the end-of-run output: per-variant FID / KID / PSNR / diversity
and aligned − base with its paired bootstrap interval (the ``fidelity-*`` stages compute them)."""

from __future__ import annotations

import json
from typing import Any

from saadi_core.hookspecs import hookimpl
from saadi_core.stages.names import fidelity_stage

FIDELITY_FILE = "fidelity.json"
HEADLINE = ("fid", "kid_mean", "psnr", "diversity_ms_ssim")


@hookimpl
def saadi_summary_entries(run: Any) -> dict[str, Any]:
    if not any(fidelity_stage(v) in run.stages for v in run.variants):
        return {"fidelity": None}  # fidelity.metrics: [] turned the stages off
    fidelity = json.loads((run.root / FIDELITY_FILE).read_text())
    return {
        "fidelity": {
            "feature_extractor": (fidelity.get("feature_extractor") or {}).get("label"),
            **{v: {k: m[k] for k in HEADLINE if k in m} for v, m in fidelity["variants"].items()},
            "comparison": {
                k: {f: b.get(f) for f in ("difference", "ci95", "verdict")}
                for k, b in (fidelity.get("comparison") or {}).items()
            },
        }
    }


@hookimpl
def saadi_terminal_summary(summary: dict[str, Any], write: Any) -> None:
    for key, block in ((summary.get("fidelity") or {}).get("comparison") or {}).items():
        interval = block.get("ci95")
        bounds = f" [{interval[0]:+.4g}, {interval[1]:+.4g}]" if interval else ""
        write(
            f"fidelity {key} aligned − base {block['difference']:+.4g}{bounds} (95 % paired bootstrap): {block['verdict']}"
        )
