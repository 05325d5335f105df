"""Experiment tracking (saadi_core.tracking): a run's events reach TensorBoard and MLflow through
accelerate's tracker API, and are read back from what those libraries wrote."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from saadi_core.errors import ConfigError
from saadi_core.store import RunStore
from saadi_core.tracking import attach, check_trackers, metric_name

DPO_LOSS = [0.69, 0.61, 0.55, 0.52]


def _emit(store: RunStore) -> None:
    """What a run's align stage logs: DPO steps, a validation curve, the stage timing."""
    store.log_event("stage_started", stage="align", key="k")
    store.log_event("progress_started", task="diffusion-dpo", total=4)
    store.log_event("dpo_validate", step=0, selector_pass=0.40, mean_score=0.45)
    for step, loss in enumerate(DPO_LOSS, start=1):
        store.log_event(
            "dpo_step", step=step, loss=loss, implicit_accuracy=0.25 * step, grad_norm=1.0
        )
    store.log_event("dpo_validate", step=4, selector_pass=0.55, mean_score=0.52)
    store.log_event("stage_finished", stage="align", key="k", seconds=12.5)
    store.log_event("stage_started", stage="train-selector", key="s")
    store.log_event("selector_epoch", selector="resnet18", epoch=1, loss=1.2, lr=0.001)


def read_tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of every event file under ``folder`` (tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def read_mlflow(
    uri: str, run_name: str
) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    """Metric histories and params of the MLflow run called ``run_name`` (MlflowClient)."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault(
        "MLFLOW_ALLOW_FILE_STORE", "true"
    )  # MLflow 3 refuses to read a file store otherwise
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("saadi")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{run_name}'"
    )
    assert len(runs) == 1
    run = runs[0]
    histories = {
        k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
        for k in run.data.metrics
    }
    return histories, run.data.params


@pytest.mark.slow  # importing torch.utils.tensorboard and mlflow alone takes ~10 s on a loaded 2-core machine
@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("mlflow") is None,
    reason="saadi[tracking] not installed",
)
def test_dpo_curves_timings_and_summary_read_back_from_tensorboard_and_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = RunStore.create(tmp_path, "r1", {})
    tracker = attach(
        ["tensorboard", "mlflow"],
        store,
        "r1",
        {"generator": {"kind": "ssd", "options": {"lr": 0.001}}, "seed": 0},
    )
    _emit(store)
    tracker.log_summary(
        {
            "selector_pass": {"base": {"rate": 0.4}, "aligned": {"rate": 0.55}, "p_value": 0.03},
            "run": "x",
            "downstream": {"real+aligned@1x": {"mean": 0.61}},
        }
    )
    tracker.finish()
    assert (tmp_path / "r1" / "events.jsonl").read_text().count(
        "dpo_step"
    ) == 4  # still logged for machines
    assert (
        "MLFLOW_TRACKING_URI" not in os.environ
    )  # the run's own store does not leak to later runs

    tb = read_tensorboard(tmp_path / "r1" / "tracking" / "tensorboard" / "r1")
    assert tb["align/dpo_step/loss"] == [
        (s, pytest.approx(v)) for s, v in enumerate(DPO_LOSS, start=1)
    ]
    assert [v for _, v in tb["align/dpo_step/implicit_accuracy"]] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0]
    )
    assert tb["align/dpo_validate/selector_pass"] == [
        (0, pytest.approx(0.40)),
        (4, pytest.approx(0.55)),
    ]
    assert tb["timing/align_seconds"] == [(0, 12.5)]
    assert tb["train-selector/selector_epoch/loss"] == [(1, pytest.approx(1.2))]
    assert tb["summary/selector_pass/aligned/rate"] == [(0, pytest.approx(0.55))]
    assert not any("progress" in tag for tag in tb)

    uri = (tmp_path / "r1" / "tracking" / "mlruns").resolve().as_uri()
    metrics, params = read_mlflow(uri, "r1")
    assert metrics["align/dpo_step/loss"] == [
        (s, pytest.approx(v)) for s, v in enumerate(DPO_LOSS, start=1)
    ]
    assert metrics["align/dpo_validate/selector_pass"] == [
        (0, pytest.approx(0.40)),
        (4, pytest.approx(0.55)),
    ]
    assert metrics["summary/selector_pass/p_value"] == [(0, pytest.approx(0.03))]
    assert metrics["summary/downstream/real_aligned_1x/mean"] == [(0, pytest.approx(0.61))]
    assert params["generator.kind"] == "ssd" and params["generator.options.lr"] == "0.001"


@pytest.mark.slow
def test_wandb_offline_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    store = RunStore.create(tmp_path, "r2", {})
    tracker = attach(["wandb"], store, "r2", {"seed": 0})
    _emit(store)
    tracker.finish()
    assert list((tmp_path / "r2" / "tracking" / "wandb").rglob("*.wandb"))


def test_no_tracker_by_default_and_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore.create(tmp_path, "r3", {})
    sink = store.log_event
    assert attach([], store, "r3", {}) is None and store.log_event == sink
    assert (
        metric_name("summary/downstream/real+aligned@1x/mean")
        == "summary/downstream/real_aligned_1x/mean"
    )
    with pytest.raises(ConfigError, match="unknown tracker 'neptune'"):
        check_trackers(["neptune"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"saadi\[tracking\]"):
        check_trackers(["mlflow"])


def test_log_with_flag_is_validated_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from saadi_core.cli import main
    from saadi_core.config import build_run_config

    config, _ = build_run_config(None, {"log_with": ["tensorboard", "mlflow"]})
    assert (
        config.log_with == ["tensorboard", "mlflow"]
        and build_run_config(None, {})[0].log_with == []
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--runs-dir", str(tmp_path), "--log-with", "neptune"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "log_with" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing ran
