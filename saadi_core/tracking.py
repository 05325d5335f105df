"""Experiment tracking: a run's curves in TensorBoard, MLflow or Weights & Biases.

Every training loop already reports its per-step metrics as events (``ssd.train`` loss,
``selector_epoch`` loss, ``dpo_step`` loss and implicit accuracy, ``dpo_validate`` pass rates, …)
and the run store records every stage's start and end; all of them pass through one place, the
run store's event log. :class:`RunTracker` wraps that log: each event is still written to
``events.jsonl``, and its numeric fields are also sent to the trackers chosen with
``--log-with`` through accelerate's tracker API (``accelerate.tracking``). Metric names are
``<stage>/<event>/<field>`` (``align/dpo_step/loss``, ``downstream-real-s0/selector_epoch/loss``),
so the same event from two stages (the selector and a downstream model) never mixes; the step is
the event's own ``step`` or ``epoch`` when it has one. Stage timings go to
``timing/<stage>_seconds`` and the figures of ``summary.json`` to ``summary/<key path>`` when
the run ends; the run's config is stored as the tracker run's parameters — all under one run name.

Nothing is imported unless asked for: the tracker libraries are optional
(``pip install 'saadi[tracking]'`` for TensorBoard and MLflow; ``pip install wandb`` for W&B).
Where the logs go: TensorBoard to ``<run>/tracking/tensorboard/<run name>``; MLflow to the server
in ``MLFLOW_TRACKING_URI`` if set, else a local file store ``<run>/tracking/mlruns``; W&B to its
own service (``WANDB_MODE=offline`` keeps it in ``<run>/tracking/wandb``).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saadi_core.errors import ConfigError

#: tracker name -> (module that must be importable, how to install it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install 'saadi[tracking]'"),
    "mlflow": ("mlflow", "pip install 'saadi[tracking]'"),
    "wandb": ("wandb", "pip install wandb"),
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")
#: fields that index an event rather than measure something
_INDEX_FIELDS = ("step", "epoch")
#: bookkeeping events whose numbers are not curves (progress bars, cache keys)
_SKIP_EVENTS = {
    "progress_started",
    "progress_finished",
    "stage_started",
    "stage_cached",
    "stage_failed",
}


def check_trackers(names: list[str]) -> list[str]:
    """The requested tracker names, de-duplicated; a one-line error for an unknown name or a
    tracker whose library is not installed (before any stage runs)."""
    chosen = list(
        dict.fromkeys(n.strip().lower() for name in names for n in name.split(",") if n.strip())
    )
    for name in chosen:
        if name not in TRACKERS:
            raise ConfigError(
                f"unknown tracker '{name}' for --log-with; known: {', '.join(TRACKERS)}"
            )
        module, hint = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--log-with {name} needs the '{module}' package: {hint}")
    return chosen


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}/" if prefix or key else ""))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}{i}/"))
        return out
    return {prefix.rstrip("/"): value}


def metric_name(key: str) -> str:
    """``key`` with every character MLflow rejects in a metric name replaced by ``_``
    (``summary/downstream/real+aligned@1x/mean`` -> ``…/real_aligned_1x/mean``); applied for every
    tracker, so a curve has the same name in all of them."""
    return _UNSAFE.sub("_", key)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _params(config: dict[str, Any]) -> dict[str, Any]:
    """A config as flat ``key.path -> str|int|float|bool`` parameters (what every tracker takes)."""
    params = {}
    for key, value in _flatten(config).items():
        key = key.replace("/", ".")
        params[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return params


class RunTracker:
    """Sends a run's events, timings and summary to accelerate trackers under one run name."""

    def __init__(
        self, names: list[str], run_name: str, directory: Path, config: dict[str, Any]
    ) -> None:
        self.names = check_trackers(names)
        self.run_name = run_name
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._own_mlflow_store = False
        self.trackers = [self._make(name) for name in self.names]
        self.stage = "run"
        self._counters: dict[str, int] = defaultdict(int)
        self._timings = 0
        self._finished = False
        for tracker in self.trackers:
            tracker.start()
            tracker.store_init_configuration(_params(config))
        if self._own_mlflow_store:  # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI,
            os.environ.pop(
                "MLFLOW_TRACKING_URI", None
            )  # which would send later runs and subprocesses here
        atexit.register(self.finish)

    def _make(self, name: str) -> Any:
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        if name == "tensorboard":
            return TensorBoardTracker(self.run_name, self.directory / "tensorboard")
        if name == "mlflow":
            import mlflow

            if not os.environ.get("MLFLOW_TRACKING_URI"):
                # a local file store in the run directory: no server to run, copied with the run
                # (MLflow 3 asks for this opt-in: its file store is in maintenance mode)
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                self._own_mlflow_store = True
                mlflow.set_tracking_uri((self.directory / "mlruns").resolve().as_uri())
            return MLflowTracker(experiment_name="saadi", run_name=self.run_name)
        return WandBTracker(self.run_name, project="saadi", dir=str(self.directory))

    # ------------------------------------------------------------------ events

    def wrap(self, sink: Callable[..., None]) -> Callable[..., None]:
        """``sink`` (the run store's event log) that also forwards each event to the trackers."""

        def log_event(event: str, **fields: Any) -> None:
            sink(event, **fields)
            self.event(event, **fields)

        return log_event

    def event(self, event: str, **fields: Any) -> None:
        if event == "stage_started":
            self.stage = str(fields.get("stage", self.stage))
        if event == "stage_finished":
            seconds = _number(fields.get("seconds"))
            if seconds is not None:
                self._log(
                    {f"timing/{fields.get('stage', self.stage)}_seconds": seconds}, self._timings
                )
                self._timings += 1
            return
        if event in _SKIP_EVENTS:
            return
        values = {
            f"{self.stage}/{event}/{k}": v
            for k, v in fields.items()
            if k not in _INDEX_FIELDS and _number(v) is not None
        }
        if not values:
            return
        key = f"{self.stage}/{event}"
        step = next(
            (int(fields[k]) for k in _INDEX_FIELDS if _number(fields.get(k)) is not None), None
        )
        if step is None:
            step = self._counters[key]
            self._counters[key] += 1
        self._log({k: float(v) for k, v in values.items()}, step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The numeric figures of ``summary.json`` as ``summary/<key path>`` (step 0)."""
        values = {
            f"summary/{k}": _number(v)
            for k, v in _flatten(summary).items()
            if _number(v) is not None
        }
        self._log(values, 0)

    def _log(self, values: dict[str, float], step: int) -> None:
        if not values or self._finished:
            return
        values = {metric_name(k): v for k, v in values.items()}
        for tracker in list(self.trackers):
            try:
                tracker.log(values, step=step)
            except Exception as exc:  # noqa: BLE001 - a tracker's failure must not stop the run
                self.trackers.remove(tracker)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(
                    f"warning: --log-with {tracker.name} stopped logging: {reason}", file=sys.stderr
                )

    def finish(self) -> None:
        """Close every tracker (idempotent; also runs at interpreter exit after a failure)."""
        if self._finished:
            return
        self._finished = True
        for tracker in self.trackers:
            tracker.finish()
        atexit.unregister(self.finish)


def attach(
    names: list[str], store: Any, run_name: str, config: dict[str, Any]
) -> RunTracker | None:
    """A :class:`RunTracker` wrapping ``store.log_event`` (so stage events and every progress
    event reach the trackers), or ``None`` when no tracker was asked for."""
    if not names:
        return None
    tracker = RunTracker(names, run_name, Path(store.root) / "tracking", config)
    store.log_event = tracker.wrap(store.log_event)
    return tracker
