"""Plots for the report, rendered to PNG bytes with matplotlib's Agg canvas.

Figures are built on ``matplotlib.figure.Figure`` directly (no ``pyplot``): no global backend is
switched, so building a report inside a notebook or a GUI session leaves the user's backend
alone, and figures are freed as soon as they are rendered.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

BASE_COLOUR = "#7a8599"
ALIGNED_COLOUR = "#d9480f"
POOL_COLOUR = "#3b6fb6"
THRESHOLD_COLOUR = "#1d2330"


def _figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def score_histogram(
    series: Mapping[str, Sequence[float]], threshold: float | None, title: str
) -> bytes:
    """Overlaid histograms on shared bins, the threshold ``h`` as a vertical line: the share of
    mass right of ``h`` is the pass rate, so a shift across it is what alignment should show."""
    fig, axes = _figure(6.4, 3.2)
    ax = axes[0, 0]
    values = [np.asarray(v, dtype=float) for v in series.values() if len(v)]
    lo = min([0.0, *(float(v.min()) for v in values)])
    hi = max([1.0, *(float(v.max()) for v in values)])
    bins = np.linspace(lo, hi, 31)
    colours = {"base": BASE_COLOUR, "aligned": ALIGNED_COLOUR, "pool": POOL_COLOUR}
    for label, data in series.items():
        if len(data):
            ax.hist(
                np.asarray(data, dtype=float),
                bins=bins,
                alpha=0.55,
                label=f"{label} (n={len(data)})",
                color=colours.get(label.split()[0]),
            )
    if threshold is not None:
        ax.axvline(
            threshold,
            color=THRESHOLD_COLOUR,
            linestyle="--",
            linewidth=1.5,
            label=f"h = {threshold:g}",
        )
    ax.set_xlabel("selector score")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (per-batch DPO metrics are noisy; the trend is what matters)."""
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    head = np.array([values[: i + 1].mean() for i in range(window - 1)])
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def dpo_curves(
    train: Mapping[str, Sequence[tuple[float, float]]],
    validation: Mapping[str, Sequence[tuple[float, float]]],
    best_step: float | None = None,
) -> bytes:
    """One panel per training metric (raw and smoothed) and one for validation metrics.

    ``train`` maps a metric (``loss``, ``implicit_accuracy``, ``reward_margin``; a ``round k``
    suffix for iterative runs) to ``(step, value)`` points; ``validation`` the same for held-out
    metrics. The selected checkpoint (``best_step``) is marked on every panel.
    """
    order = {"loss": 0, "implicit_accuracy": 1, "reward_margin": 2}
    metrics = sorted({name.split(" @ ")[0] for name in train}, key=lambda m: (order.get(m, 3), m))
    panels = metrics + (["validation"] if validation else [])
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = _figure(6.2 * cols, 3.0 * rows, rows, cols)
    flat = axes.ravel()
    for ax, metric in zip(flat, metrics):
        for name, points in train.items():
            if name.split(" @ ")[0] != metric or not points:
                continue
            steps, values = np.asarray(points, dtype=float).T
            suffix = name.partition(" @ ")[2]
            line = ax.plot(steps, values, alpha=0.25, linewidth=0.8)[0]
            window = max(1, len(values) // 20)
            ax.plot(
                steps,
                _smooth(values, window),
                color=line.get_color(),
                linewidth=1.8,
                label=(suffix + ": " if suffix else "") + f"moving mean ({window} steps)",
            )
        if metric == "loss":
            ax.axhline(
                np.log(2),
                color=THRESHOLD_COLOUR,
                linestyle=":",
                linewidth=1,
                label="ln 2 (initial)",
            )
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if validation:
        ax = flat[len(metrics)]
        for name, points in validation.items():
            if points:
                steps, values = np.asarray(points, dtype=float).T
                ax.plot(steps, values, marker="o", markersize=3, label=name.replace("_", " "))
        ax.set_title("validation (held-out seeds)", fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in flat[: len(panels)]:
        if best_step is not None:
            ax.axvline(best_step, color="#2e9d4d", linestyle="--", linewidth=1)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    return _png(fig)


def data_scaling(
    scales: Sequence[float],
    arms: Mapping[str, Sequence[tuple[float | None, float | None]]],
    real_only: tuple[float, float] | None,
    metric: str,
) -> bytes:
    """Downstream metric against the synthetic amount (× real train size), mean ± std over
    seeds per arm, the real-only baseline as a line with its ±std band."""
    fig, axes = _figure(6.8, 3.8)
    ax = axes[0, 0]
    x = np.asarray(scales, dtype=float)
    offsets = np.linspace(-0.04, 0.04, max(1, len(arms))) * (
        x.max() - x.min() if x.size > 1 else 1.0
    )
    for offset, (name, points) in zip(offsets, arms.items()):
        keep = [(xi, m, s) for xi, (m, s) in zip(x, points) if m is not None]
        if not keep:
            continue
        xs, means, stds = (np.asarray(v, dtype=float) for v in zip(*keep))
        ax.errorbar(xs + offset, means, yerr=np.nan_to_num(stds), marker="o", capsize=4, label=name)
    if real_only is not None:
        mean, std = real_only
        ax.axhline(mean, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.2, label="real only")
        ax.axhspan(mean - (std or 0.0), mean + (std or 0.0), color=THRESHOLD_COLOUR, alpha=0.08)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{v:g}×" for v in x])
    ax.set_xlabel("synthetic images added (× real train size)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize=8)
    return _png(fig)
