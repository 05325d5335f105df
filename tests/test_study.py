"""``saadi study``: arms share stages, mixes draw from their members, results are per seed with
paired confidence intervals. Uses the in-process plugins of ``test_pipeline``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_pipeline import CALLS, FakePlugin

from saadi_core.config import StudyConfig
from saadi_core.errors import ConfigError
from saadi_core.evaluation.stats import interval_verdict, paired_interval
from saadi_core.registry import Registry
from saadi_core.study import run_study


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_plugin(FakePlugin(), name="fake")
    return reg


def study_config(tmp_path, **extra) -> StudyConfig:
    data = {
        "name": "s",
        "runs_dir": str(tmp_path),
        "dataset": "fake-data",
        "selector": "colour",
        "pairing": "simple",
        "pool": {"n_per_condition": 16},
        "seeds": [0, 1],
        "scales": [1, 2],
        "arms": [
            {"name": "base", "generator": "shift"},
            {"name": "aligned", "generator": "shift", "aligner": {"kind": "shrink"}},
            {"name": "half-half", "mix": ["base", "aligned"]},
        ],
    }
    data.update(extra)
    data = {
        k: ({"kind": v} if k in ("dataset", "selector", "pairing") else v) for k, v in data.items()
    }
    return StudyConfig.model_validate(data)


def test_arms_share_stages_and_mix_draws_from_members(tmp_path, registry):
    CALLS.clear()
    result = run_study(study_config(tmp_path), registry, quiet=True)
    # one generator per seed for two arms; one alignment per seed
    assert CALLS.count("fit") == 2 and CALLS.count("align") == 2
    # per seed: the real-only model is the selector's (reused, not refitted); 2 arms + 1 mix at
    # 2 scales train on 20 (1x) and 40 (2x) synthetic samples
    fits = sorted(c for c in CALLS if c.startswith("fit-selector"))
    assert fits == sorted(
        ["fit-selector:0"] * 2 + ["fit-selector:20"] * 6 + ["fit-selector:40"] * 6
    )
    summary = json.loads((tmp_path / "s" / "study.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert [a["name"] for a in summary["arms"]] == ["base", "aligned", "half-half"]
    mix = summary["arms"][2]
    assert mix["mix"] == ["base", "aligned"] and set(mix["downstream"]) == {"1", "2"}
    assert len(mix["downstream"]["1"]["values"]) == 2
    aligned = summary["arms"][1]
    assert aligned["aligned"] and aligned["pass_rates"]["0"]["oracle_pass"]["verdict"] == "improved"
    assert len(summary["comparisons"]) == 3 * 2 and all(
        c["n_seeds"] == 2 for c in summary["comparisons"]
    )
    # the mix's training set holds equal shares of its members' samples
    mix_run = tmp_path / "s" / "runs" / "half-half-seed0"
    manifest = json.loads((mix_run / "manifest.json").read_text())
    stage = json.loads(
        (
            mix_run / manifest["stages"]["downstream-half-half-1x-s0"]["path"] / "stage.json"
        ).read_text()
    )
    assert stage["outputs"]["n_synthetic"] == 20
    assert {"sample-base", "sample-aligned"} <= set(stage["deps"])


def test_rerun_is_fully_cached(tmp_path, registry):
    run_study(study_config(tmp_path), registry, quiet=True)
    CALLS.clear()
    run_study(study_config(tmp_path), registry, quiet=True)
    assert CALLS == []


def test_base_arm_runs_no_alignment(tmp_path, registry):
    CALLS.clear()
    cfg = study_config(
        tmp_path, seeds=[0], scales=[1], arms=[{"name": "base", "generator": "shift"}]
    )
    run_study(cfg, registry, quiet=True)
    assert "align" not in CALLS
    stages = json.loads((tmp_path / "s" / "runs" / "base-seed0" / "manifest.json").read_text())[
        "stages"
    ]
    assert not {"generate-pool", "score", "pair", "align", "sample-aligned"} & set(stages)
    summary = json.loads((tmp_path / "s" / "runs" / "base-seed0" / "summary.json").read_text())
    assert (
        summary["selector_pass"] is None
        and summary["pass_rates"]["base"]["oracle_rate"] is not None
    )


def test_confidence_interval_and_wording():
    assert paired_interval([0.1]) is None
    low, high = paired_interval([0.02, 0.04, 0.03])
    assert low == pytest.approx(0.03 - 4.303 * 0.01 / 3**0.5, abs=1e-3) and high > 0.03
    assert interval_verdict((low, high)).startswith("better")
    assert interval_verdict((-0.01, 0.02)) == "no significant difference"
    assert interval_verdict((-0.05, -0.01)).startswith("worse")


def test_mix_of_a_mix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mixes other mixes"):
        study_config(
            tmp_path,
            arms=[
                {"name": "a", "generator": "shift"},
                {"name": "m", "mix": ["a"]},
                {"name": "mm", "mix": ["m", "a"]},
            ],
        )


def test_cli_runs_a_study_file(tmp_path, registry, monkeypatch):
    from saadi_core import cli

    monkeypatch.setattr(cli, "_registry", lambda: registry)
    cfg = study_config(tmp_path, seeds=[0], scales=[1]).model_dump(mode="json")
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(cfg))
    cli.main(["--quiet", "study", str(file)])
    assert (tmp_path / "s" / "study.json").is_file()


def test_study_typo_is_a_config_error(tmp_path):
    file = tmp_path / "study.yaml"
    file.write_text(
        "name: s\nscales: [1]\narms:\n  - name: a\n    generator: shift\n    alinger: x\n"
    )
    from saadi_core.config import load_config_file

    with pytest.raises(ConfigError, match=r"study.yaml:6"):
        load_config_file(file)


EXAMPLE_STUDIES = sorted((Path(__file__).parent.parent / "examples" / "studies").glob("*.yaml"))


def test_the_example_studies_are_found():
    """An empty glob would parametrise the check below away instead of failing it."""
    assert len(EXAMPLE_STUDIES) >= 10


@pytest.mark.parametrize("file", EXAMPLE_STUDIES, ids=[p.stem for p in EXAMPLE_STUDIES])
def test_example_studies_validate(file):
    """Every shipped example study names only installed kinds and valid options."""
    from saadi_core.config import load_config_file, validate_components
    from saadi_core.registry import get_registry

    config, doc = load_config_file(file)
    assert isinstance(config, StudyConfig) and len(config.seeds) >= 3
    validate_components(config, get_registry(), doc)


def test_filter_arms_keep_the_selectors_choice_at_the_same_count_and_feed_the_evidence_table(
    tmp_path, registry
):
    arms = [
        {"name": "base", "generator": "shift"},
        {"name": "filter", "generator": "shift", "filter": True},
        {"name": "aligned", "generator": "shift", "aligner": {"kind": "shrink"}},
        {
            "name": "aligned-filter",
            "generator": "shift",
            "aligner": {"kind": "shrink"},
            "filter": True,
        },
    ]
    CALLS.clear()
    cfg = study_config(tmp_path, seeds=[0, 1], scales=[1], downstream_seeds=2, arms=arms)
    summary = run_study(cfg, registry, quiet=True).summary
    assert (
        CALLS.count("fit") == 2 and CALLS.count("align") == 2
    )  # filter arms reuse the generator and alignment

    run = tmp_path / "s" / "runs" / "filter-seed0"
    manifest = json.loads((run / "manifest.json").read_text())
    stage = json.loads(
        (run / manifest["stages"]["sample-filter"]["path"] / "stage.json").read_text()
    )
    base_stage = json.loads(
        (run / manifest["stages"]["sample-base"]["path"] / "stage.json").read_text()
    )
    assert (
        stage["outputs"]["n_samples"] == base_stage["outputs"]["n_samples"]
    )  # same count as the base arm
    from saadi_core.samples_io import load_samples

    kept = load_samples(run / manifest["stages"]["sample-filter"]["path"])
    base = load_samples(run / manifest["stages"]["sample-base"]["path"])

    def per_condition(samples):
        return sorted(s.condition.id for s in samples)

    assert per_condition(kept) == per_condition(base)
    run_summary = json.loads((run / "summary.json").read_text())
    rate = run_summary["pass_rates"]["filter"]["selector_rate"]
    assert (
        rate >= 1 - stage["outputs"]["topped_up_share"] - 1e-9
    )  # every sample but the top-ups passes h
    base_rate = json.loads((tmp_path / "s" / "runs" / "base-seed0" / "summary.json").read_text())[
        "pass_rates"
    ]["base"]["selector_rate"]
    assert rate > base_rate

    # 2 study seeds × 2 downstream seeds, compared cell by cell with base and filter
    evidence = summary["evidence"]
    assert evidence["base_arm"] == "base" and evidence["filter_arm"] == "filter"
    rows = {r["arm"]: r for r in evidence["rows"]}
    assert set(rows) == {"real only", "base", "filter", "aligned", "aligned-filter"}
    assert (
        rows["aligned"]["vs_base"]["n_cells"] == 4
        and rows["aligned"]["vs_filter"]["ci95"] is not None
    )
    assert (
        "vs_base" not in rows["base"]
        and "vs_filter" not in rows["filter"]
        and rows["filter"]["vs_base"]
    )
    assert rows["filter"]["selector_pass"] == pytest.approx(
        sum(
            json.loads((tmp_path / "s" / "runs" / f"filter-seed{s}" / "summary.json").read_text())[
                "pass_rates"
            ]["filter"]["selector_rate"]
            for s in (0, 1)
        )
        / 2
    )
    assert rows["real only"]["macro_f1"]["n_cells"] == 4
    assert summary["arms"][1]["downstream"]["1"]["cells"] == ["0/0", "0/100", "1/1", "1/101"]
    from saadi_core.evidence import evidence_lines

    runs = {arm["name"]: list(arm["runs"].values()) for arm in summary["arms"]}
    columns, lines = evidence_lines(evidence, runs)
    assert (
        len(lines) == 5
        and all(len(line) == len(columns) for line in lines)
        and lines[0][0] == "real only"
    )
    # the stage time per seed is read from the run stores when printed (not in study.json)
    assert (
        lines[0][-1] == "—"
        and float(lines[3][-1]) >= 0
        and "stage_seconds" not in json.dumps(summary)
    )


def test_every_arm_is_compared_with_the_control_on_the_same_evaluation_samples(tmp_path, registry):
    """The control arm's oracle verdicts are paired sample by sample with every other arm's, per
    seed and pooled; the downstream metric cell by cell."""
    from saadi_core.evaluation.stats import mcnemar_exact
    from saadi_core.evidence import evidence_lines

    arms = [
        {"name": "base", "generator": "shift"},
        {"name": "aligned", "generator": "shift", "aligner": {"kind": "shrink"}},
        {
            "name": "control",
            "generator": "shift",
            "aligner": {"kind": "shrink", "options": {"strength": 0.1}},
            "control": True,
        },
    ]
    cfg = study_config(tmp_path, seeds=[0, 1], scales=[1], arms=arms)
    evidence = run_study(cfg, registry, quiet=True).summary["evidence"]
    rows = {r["arm"]: r for r in evidence["rows"]}
    assert evidence["control_arm"] == "control"

    def verdicts(run: str, variant: str) -> list[bool]:
        root = tmp_path / "s" / "runs" / run
        manifest = json.loads((root / "manifest.json").read_text())
        path = root / manifest["stages"]["evaluate"]["path"] / variant / "scores.json"
        return json.loads(path.read_text())["oracle"]

    mine = verdicts("aligned-seed0", "aligned") + verdicts("aligned-seed1", "aligned")
    theirs = verdicts("control-seed0", "aligned") + verdicts("control-seed1", "aligned")
    pooled = rows["aligned"]["oracle_vs_control"]["pooled"]
    assert pooled == mcnemar_exact(theirs, mine) and pooled["difference_points"] > 0
    assert set(rows["aligned"]["oracle_vs_control"]["per_seed"]) == {"0", "1"}
    # the base arm's samples are the control's own base samples: the control's gain, negated
    base_vs_control = rows["base"]["oracle_vs_control"]["pooled"]
    control_vs_base = rows["control"]["oracle_vs_base"]["pooled"]
    assert base_vs_control["difference_points"] == -control_vs_base["difference_points"]
    assert (
        rows["aligned"]["vs_control"]["n_cells"] == 2 and "oracle_vs_control" not in rows["control"]
    )
    columns, lines = evidence_lines(evidence)
    assert "oracle − control (McNemar)" in columns and all(len(x) == len(columns) for x in lines)
    # the HTML report carries the same table
    from saadi_core.report.build import build_report

    html = build_report(tmp_path / "s", registry=registry).read_text()
    section = html.split('<section id="study-evidence">')[1].split("</section>")[0]
    shown = f"{pooled['difference_points']:+.1f} (p = {pooled['p_value']:.2g})"
    assert "oracle − control (McNemar)" in section and shown in section


def test_a_study_without_downstream_models_compares_the_arms_on_their_samples(tmp_path, registry):
    """downstream_seeds 0: no downstream stage runs (the real-only one included), and the evidence
    table still pairs every arm with base and control on the oracle."""
    from rich.console import Console

    from saadi_core.summary import print_study

    arms = [
        {"name": "base", "generator": "shift"},
        {"name": "aligned", "generator": "shift", "aligner": "shrink"},
        {"name": "filter", "generator": "shift", "filter": True},
        {
            "name": "control",
            "generator": "shift",
            "aligner": {"kind": "shrink", "options": {"strength": 0.1}},
            "control": True,
        },
    ]
    CALLS.clear()
    cfg = study_config(tmp_path, seeds=[0, 1], scales=[1], downstream_seeds=0, arms=arms)
    result = run_study(cfg, registry, quiet=True)
    assert not [c for c in CALLS if c.startswith("fit-selector:") and c != "fit-selector:0"]
    for run in (tmp_path / "s" / "runs").iterdir():
        stages = json.loads((run / "manifest.json").read_text())["stages"]
        assert not [name for name in stages if name.startswith("downstream")], run.name
    summary = result.summary
    assert summary["real_only"] is None and summary["comparisons"] == []
    rows = {r["arm"]: r for r in summary["evidence"]["rows"]}
    assert rows["aligned"]["oracle_vs_control"]["pooled"]["n"] > 0
    assert "macro_f1" not in rows["aligned"] and rows["aligned"]["vs_control"] is None
    console = Console(record=True, width=300)
    print_study(result, console)
    printed = console.export_text()
    assert "no downstream models" in printed and "oracle − control" in printed
    # columns no row has a figure for (the downstream ones here) are left out of the table
    from saadi_core.evidence import evidence_lines

    columns, lines = evidence_lines(summary["evidence"])
    assert not [c for c in columns if "[95 % CI]" in c or "mean ± std" in c]
    assert all(any(line[i] != "—" for line in lines) for i in range(1, len(columns)))
    from saadi_core.report.build import build_report

    html = build_report(tmp_path / "s", registry=registry).read_text()
    assert "could not render" not in html and "oracle − control (McNemar)" in html


def test_mix_arms_need_downstream_models(tmp_path):
    with pytest.raises(Exception, match="need downstream_seeds >= 1"):
        study_config(tmp_path, downstream_seeds=0)


@pytest.mark.parametrize(
    "arm, message",
    [
        ({"name": "c", "generator": "shift", "control": True}, "a control arm is an aligned"),
        (
            {
                "name": "c",
                "generator": "shift",
                "aligner": "shrink",
                "filter": True,
                "control": True,
            },
            "a control arm is an aligned",
        ),
    ],
)
def test_a_control_arm_must_be_an_aligned_generator(tmp_path, arm, message):
    with pytest.raises(Exception, match=message):
        study_config(tmp_path, arms=[{"name": "a", "generator": "shift"}, arm])


def test_one_control_arm_per_study(tmp_path):
    control = {"generator": "shift", "aligner": "shrink", "control": True}
    with pytest.raises(Exception, match="one control arm per study"):
        study_config(tmp_path, arms=[{"name": "a", **control}, {"name": "b", **control}])


def test_filter_on_a_mix_is_refused(tmp_path):
    with pytest.raises(Exception, match="filter applies to a generator arm"):
        study_config(
            tmp_path,
            arms=[{"name": "a", "generator": "shift"}, {"name": "m", "mix": ["a"], "filter": True}],
        )


@pytest.mark.slow  # needs the tracking extra, which CI installs before the slow tests
def test_study_log_with_tracks_every_arm_run_under_its_own_name(tmp_path, registry, monkeypatch):
    pytest.importorskip("tensorboard")
    from saadi_core import cli

    monkeypatch.setattr(cli, "_registry", lambda: registry)
    cfg = study_config(tmp_path, seeds=[0], scales=[1]).model_dump(mode="json")
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(cfg))
    cli.main(["--quiet", "study", str(file), "--log-with", "tensorboard"])
    runs = tmp_path / "s" / "runs"
    for arm in ("base", "aligned"):
        events = list((runs / f"{arm}-seed0" / "tracking" / "tensorboard").rglob("events.out.*"))
        assert events, f"no TensorBoard events for arm {arm}"


def test_study_log_with_names_an_unknown_tracker_in_one_line(
    tmp_path, registry, monkeypatch, capsys
):
    from saadi_core import cli

    monkeypatch.setattr(cli, "_registry", lambda: registry)
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(study_config(tmp_path).model_dump(mode="json")))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", str(file), "--log-with", "neptune"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "study.yaml" in err and "log_with" in err
    assert not (tmp_path / "s").exists()  # nothing ran
