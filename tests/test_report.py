"""The HTML report: a real run of the pipeline (in-process fake plugins from test_pipeline), a
hand-written fidelity stage and study.json, and the page checked for its sections, embedded images,
the significance wording and graceful gaps. A slow test renders it in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from test_pipeline import FakePlugin
from test_pipeline import config as pipeline_config

from saadi_core.pipeline import run_pipeline
from saadi_core.registry import Registry
from saadi_core.report import build_report
from saadi_core.report.images import PALETTE, outline, thumbnail
from saadi_core.report.run_sections import PER_GROUP, RUN_SECTIONS
from saadi_core.report.study_sections import STUDY_SECTIONS
from saadi_core.report.wording import ci_reading, mcnemar_reading

FIDELITY = {
    "feature_extractor": {
        "name": "selector-backbone",
        "label": "trained selector backbone (not Inception)",
    },
    "variants": {
        "base": {
            "fid": 12.5,
            "kid_mean": 0.031,
            "kid_std": 0.004,
            "ms_ssim": 0.41,
            "psnr": float("inf"),
            "diversity_ms_ssim": 0.22,
            "per_class": {
                "red": {
                    "fid": 10.1,
                    "kid_mean": 0.02,
                    "kid_std": 0.003,
                    "n_real": 9,
                    "n_synthetic": 40,
                }
            },
        },
        "aligned": {
            "fid": 8.25,
            "kid_mean": 0.018,
            "kid_std": 0.003,
            "ms_ssim": 0.44,
            "psnr": 21.3,
        },
    },
    "memorisation": {
        "base": {
            "nearest_distance": {"mean": 0.9, "median": 0.8, "min": 0.05},
            "closest_pairs": [
                {"synthetic_index": 0, "real_index": 3, "distance": 0.05},
                {"synthetic_index": 5, "real_index": 1, "distance": 0.07},
            ],
        },
        "aligned": {
            "nearest_distance": {"mean": 0.7, "median": 0.6, "min": 0.04},
            "closest_pairs": [{"synthetic_index": 2, "real_index": 0, "distance": 0.04}],
        },
    },
    "notes": ["KID subset size set to 40 (the smaller set)"],
}


def _registry() -> Registry:
    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    return registry


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run of the real pipeline. The fake plugins register no fidelity metric, so the
    run's ``fidelity.json`` is replaced by a hand-written one in the same place and layout."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_pipeline(pipeline_config(runs), _registry(), quiet=True)
    (result.store.root / "fidelity.json").write_text(json.dumps(FIDELITY))
    return result.store.root


@pytest.fixture(scope="module")
def run_html(run_dir, tmp_path_factory) -> str:
    out = build_report(
        run_dir, tmp_path_factory.mktemp("report") / "run.html", registry=_registry()
    )
    return out.read_text(encoding="utf-8")


def _section(html: str, anchor: str) -> str:
    """The HTML of one ``<section id=anchor>`` (sections do not nest in a run page)."""
    match = re.search(rf'<section id="{re.escape(anchor)}">(.*?)</section>', html, re.DOTALL)
    assert match, anchor
    return match.group(1)


class _Tags(HTMLParser):
    """Every tag and its attributes, as the browser's parser sees them (escaped text is not a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _assert_self_contained(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "link", "iframe", "object", "embed"}, names
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, key, value[:60])
    sources = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    png = base64.b64decode(sources[0].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size[0] > 0


# --------------------------------------------------------------------------- run report


def test_run_report_has_every_section_with_embedded_images(run_dir, run_html):
    for anchor, title in RUN_SECTIONS:
        assert f'<section id="{anchor}"><h2>{title}</h2>' in run_html.replace("&#x27;", "'"), title
        assert f'href="#{anchor}"' in run_html  # table of contents
    assert "not available" not in run_html and "could not render" not in run_html
    _assert_self_contained(run_html)
    assert (run_dir / "report.html").exists() is False  # --out was given: the run dir is untouched
    # per-class grids: both classes, base and aligned side by side, pass/fail frames from scores.json
    samples = _section(run_html, "samples")
    assert "<h3>red</h3>" in samples and "<h3>green</h3>" in samples
    assert (
        samples.count('alt="base sample') == samples.count('alt="aligned sample') == 2 * PER_GROUP
    )
    assert (
        'class="side pass"' in samples and 'class="side fail"' in samples and "oracle ✓" in samples
    )
    # histograms: evaluation (base vs aligned) and pool; DPO curves; the scaling results tables
    assert _section(run_html, "histograms").count("<img") == 2
    assert _section(run_html, "dpo").count("<img") == 1
    downstream = _section(run_html, "downstream")
    assert (
        "real+base@1x" in downstream
        and "real+aligned@1x" in downstream
        and "macro_f1" in downstream
    )
    assert "<th>red</th>" in downstream  # per-class table


def test_pass_rates_are_worded_by_significance(run_html):
    section = _section(run_html, "pass-rates")
    # the fake aligner really improves the oracle pass rate (test_pipeline asserts p < 0.05)
    oracle_row = re.search(r"<tr><td class=\"text\">oracle pass rate</td>.*?</tr>", section).group(
        0
    )
    assert "significant improvement" in oracle_row
    assert "McNemar p" in section and "fail→pass" in section


@pytest.mark.parametrize(
    ("block", "wording"),
    [
        ({"p_value": 0.01, "fail_to_pass": 30, "pass_to_fail": 5}, "significant improvement"),
        ({"p_value": 0.01, "fail_to_pass": 5, "pass_to_fail": 30}, "significantly worse"),
        ({"p_value": 0.2, "fail_to_pass": 30, "pass_to_fail": 20}, "no significant change"),
        ({"p_value": 0.05, "fail_to_pass": 30, "pass_to_fail": 15}, "no significant change"),
    ],
)
def test_mcnemar_wording(block, wording):
    assert mcnemar_reading(block)[0] == wording


@pytest.mark.parametrize(
    ("difference", "ci", "wording"),
    [
        (0.03, [-0.01, 0.07], "no significant difference"),  # positive estimate, CI holds 0
        (0.03, [0.01, 0.05], "improvement (CI excludes 0)"),
        (-0.03, [-0.05, -0.01], "worse (CI excludes 0)"),
        (0.03, None, "no confidence interval (too few seeds)"),
    ],
)
def test_confidence_interval_wording(difference, ci, wording):
    assert ci_reading(difference, ci)[0] == wording


def test_fidelity_and_memorisation_sections(run_html):
    fidelity = _section(run_html, "fidelity")
    assert (
        "trained selector backbone (not Inception)" in fidelity
        and "never with published FID" in fidelity
    )
    assert "∞" in fidelity  # PSNR of identical images
    assert "12.500" in fidelity and "8.250" in fidelity and "KID subset size" in fidelity
    memorisation = _section(run_html, "memorisation")
    assert (
        "real #3" in memorisation and "synthetic #5" in memorisation
    )  # real images rebuilt from the dataset
    assert memorisation.count("<img") == 2 * 3


def test_memorisation_without_the_dataset_shows_synthetic_side_with_a_note(run_dir, tmp_path):
    html = build_report(
        run_dir, tmp_path / "r.html", registry=Registry()
    ).read_text()  # knows no dataset kind
    memorisation = _section(html, "memorisation")
    assert "real images not shown" in memorisation and "fake-data" in memorisation
    assert "real #" not in memorisation and memorisation.count("<img") == 3


def test_missing_and_broken_artefacts_become_not_available(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "fidelity.json").unlink()
    align = run / manifest["stages"]["align"]["path"]
    (align / "history.json").write_text("{not json")
    for path in [run / "downstream.json", *run.glob("stages/downstream*/downstream.json")]:
        path.unlink()
    (run / "summary.json").unlink()
    html = build_report(run, registry=_registry()).read_text()
    assert (run / "report.html").is_file()  # default output next to the manifest
    for anchor, _ in RUN_SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert "not available: fidelity.json not found" in _section(html, "fidelity")
    assert "not available" in _section(html, "memorisation")
    assert "not available: align/history.json unreadable" in _section(html, "dpo")
    assert "not available" in _section(html, "downstream")
    assert "summary.json not found" in _section(html, "overview")
    assert "not available" not in _section(html, "samples")


def test_user_text_is_escaped(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["name"] = "<script>alert(1)</script>"
    manifest["config"]["generator"]["options"] = {"note": "<img src=http://x>"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    html = build_report(run, registry=_registry()).read_text()
    assert (
        "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    )
    _assert_self_contained(html)


def test_mask_outline_and_thumbnail():
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[1:3, 1:3] = 2
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    drawn = outline(image, mask)
    edge = np.any(drawn != image, axis=-1)
    # boundaries are drawn on the pixels before each class change, in the foreground class colour
    assert edge[0, 1] and edge[1, 0] and edge[1, 2] and edge[2, 1]
    assert not edge[3, 3] and not edge[0, 0]
    assert (drawn[edge] == PALETTE[2]).all()
    png = Image.open(io.BytesIO(thumbnail(image, mask, scale=3)))
    assert png.size == (12, 12)


def test_segmentation_run_with_only_an_evaluate_stage(tmp_path):
    """A hand-made run holding only evaluation samples with masks: the grid shows the conditioning
    mask and outlines, every other section says what is missing."""
    import torch

    from saadi_core.interfaces import Condition, Sample
    from saadi_core.samples_io import save_samples

    run = tmp_path / "seg"
    stage = run / "stages" / "evaluate-0"
    masks = [torch.zeros(8, 8, dtype=torch.int64) for _ in range(2)]
    masks[0][2:6, 2:6] = 1
    masks[1][:, 4:] = 2
    conditions = [Condition(id=f"mask:{k}", mask=m) for k, m in enumerate(masks)]
    for variant, shift in (("base", 0.0), ("aligned", 0.3)):
        samples = [
            Sample(
                image=torch.full((3, 8, 8), shift - 0.5),
                condition=c,
                generator="fake",
                seed=7,
                index=i,
                mask=c.mask,
            )
            for c in conditions
            for i in range(3)
        ]
        (stage / variant).mkdir(parents=True)
        save_samples(stage / variant, samples)
        passed = [shift > 0] * len(samples)
        (stage / variant / "scores.json").write_text(
            json.dumps(
                {"scores": [0.5 + shift] * 6, "threshold": 0.7, "selector": passed, "oracle": None}
            )
        )
    (stage / "stage.json").write_text(
        json.dumps(
            {
                "outputs": {
                    "base": {"n": 6, "selector_rate": 0.0},
                    "aligned": {"n": 6, "selector_rate": 1.0},
                    "label_preservation": {
                        v: {
                            "miou": m,
                            "miou_foreground": m - 0.1,
                            "per_class_iou": {"bg": 0.9, "a": m, "b": m - 0.2},
                        }
                        for v, m in (("base", 0.75), ("aligned", 0.7))
                    }
                    | {
                        "change": {
                            "difference": -0.05,
                            "ci95": [-0.08, -0.02],
                            "n_groups": 2,
                            "method": "paired bootstrap over 2 groups, 2000 resamples",
                            "verdict": "worse than base (95 % CI below 0)",
                        }
                    },
                }
            }
        )
    )
    manifest = {
        "name": "seg",
        "dataset": {"task": "segmentation", "classes": ["bg", "a", "b"]},
        "stages": {
            "evaluate": {"status": "done", "path": "stages/evaluate-0"},
            "align": {"status": "failed", "error": "boom"},
        },
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    html = build_report(run, registry=_registry()).read_text()
    samples = _section(html, "samples")
    assert "<h3>mask:0</h3>" in samples and "<h3>mask:1</h3>" in samples
    assert samples.count('alt="condition mask"') == 2 and "outline of the sample" in samples
    assert samples.count('class="side fail"') == samples.count('class="side pass"') == 6
    preserved = _section(html, "pass-rates")
    assert (
        "<h3>Label preservation</h3>" in preserved and "IoU a" in preserved and "75.0%" in preserved
    )
    assert (
        "mIoU aligned − base: -5.0 points [-8.0, -2.0]" in preserved
        and "worse (CI excludes 0)" in preserved
    )
    assert "not available: stage &#x27;align&#x27; is failed (boom)" in _section(html, "dpo")
    for anchor in ("diagnostics", "downstream", "fidelity", "memorisation"):
        assert "not available" in _section(html, anchor), anchor
    assert _section(html, "histograms").count("<img") == 1  # base vs aligned; no pool
    _assert_self_contained(html)


@pytest.mark.parametrize("phase", ["round", "part"])
def test_iterative_rounds_and_sequence_parts_are_plotted_apart(phase: str):
    from saadi_core.report.run_sections import _history_series

    history = [
        {phase: 1, "event": "dpo_validate", "step": 0, "oracle_pass": 0.3},
        {phase: 1, "event": "dpo_step", "step": 1, "loss": 0.69, "implicit_accuracy": 0.5},
        {phase: 2, "event": "dpo_step", "step": 1, "loss": 0.68, "implicit_accuracy": 0.6},
        {phase: 2, "event": "dpo_validate", "step": 1, "oracle_pass": 0.4},
    ]
    train, validation = _history_series(history)
    assert train[f"loss @ {phase} 1"] == [(1, 0.69)]
    assert train[f"implicit_accuracy @ {phase} 2"] == [(1, 0.6)]
    assert validation == {
        f"oracle_pass {phase} 1": [(0, 0.3)],
        f"oracle_pass {phase} 2": [(1, 0.4)],
    }


def test_an_iterative_part_of_a_sequence_is_plotted_by_part_and_round():
    from saadi_core.report.run_sections import _history_series

    history = [
        {"part": 1, "round": 1, "event": "dpo_validate", "step": 0, "oracle_pass": 0.3},
        {"part": 2, "round": 1, "event": "dpo_validate", "step": 0, "oracle_pass": 0.4},
    ]
    _, validation = _history_series(history)
    assert validation == {
        "oracle_pass part 1 round 1": [(0, 0.3)],
        "oracle_pass part 2 round 1": [(0, 0.4)],
    }


# --------------------------------------------------------------------------- study report


def _study(tmp_path: Path, run_dir: Path) -> Path:
    study = tmp_path / "study"
    (study / "runs" / "broken").mkdir(parents=True)
    (study / "runs" / "broken" / "manifest.json").write_text("{not json")
    shutil.copytree(
        run_dir, study / "runs" / "moved"
    )  # recorded elsewhere, found in the study's runs/
    doc = {
        "name": "toy-study",
        "task": "classification",
        "metric": "macro_f1",
        "seeds": [0, 1],
        "scales": [1, 2],
        "real_only": {
            "mean": 0.70,
            "std": 0.02,
            "values": [0.68, 0.72],
            "per_class": {"red": 0.8, "green": 0.6},
        },
        "arms": [
            {
                "name": "shift-aligned",
                "generator": "shift",
                "aligned": True,
                "mix": None,
                "runs": {"0": str(run_dir), "1": "runs/gone-seed1"},
                "downstream": {
                    "1": {
                        "mean": 0.74,
                        "std": 0.01,
                        "values": [0.73, 0.75],
                        "per_class": {"red": 0.81, "green": 0.67},
                    },
                    "2": {
                        "mean": 0.76,
                        "std": 0.02,
                        "values": [0.74, 0.78],
                        "per_class": {"red": 0.83, "green": 0.69},
                    },
                },
                "pass_rates": {
                    "0": {
                        "oracle_pass": {
                            "n": 80,
                            "base_rate": 0.2,
                            "aligned_rate": 0.5,
                            "difference_points": 30.0,
                            "fail_to_pass": 26,
                            "pass_to_fail": 2,
                            "p_value": 1e-5,
                        },
                        "label_preservation": {
                            "base": {"miou": 0.8},
                            "aligned": {"miou": 0.83},
                            "change": {"difference": 0.03, "ci95": [-0.01, 0.06]},
                        },
                    }
                },
            },
            {
                "name": "shift-base",
                "generator": "shift",
                "aligned": False,
                "mix": None,
                "runs": {"0": str(run_dir), "1": "runs/broken", "2": "old/place/moved"},
                "downstream": {
                    "1": {"mean": 0.71, "std": 0.03, "values": [0.68, 0.74]},
                    "2": {"mean": 0.69, "std": 0.04, "values": [0.65, 0.73]},
                },
                "pass_rates": {},
            },
        ],
        "comparisons": [
            {
                "arm": "shift-aligned",
                "scale": 2,
                "vs": "real",
                "difference": 0.06,
                "ci95": [0.02, 0.10],
                "n_seeds": 2,
            },
            {
                "arm": "shift-base",
                "scale": 1,
                "vs": "real",
                "difference": 0.01,
                "ci95": [-0.03, 0.05],
                "n_seeds": 2,
            },
        ],
    }
    (study / "study.json").write_text(json.dumps(doc))
    return study


def test_study_report(run_dir, tmp_path):
    study = _study(tmp_path, run_dir)
    html = build_report(study, registry=_registry()).read_text()
    for anchor, title in STUDY_SECTIONS:
        assert f'<section id="{anchor}"><h2>{title}</h2>' in html, title
    _assert_self_contained(html)
    assert "0.740 ± 0.010 (n=2)" in _section(html, "study-downstream") and "0.700 ± 0.020" in html
    assert _section(html, "study-scaling").count("<img") == 1
    comparisons = _section(html, "study-comparisons")
    base_row = re.search(r"<tr><td class=\"text\">shift-base</td>.*?</tr>", comparisons).group(0)
    assert (
        "no significant difference" in base_row and "improvement" not in base_row
    )  # +0.01 but CI holds 0
    aligned_row = re.search(
        r"<tr><td class=\"text\">shift-aligned</td>.*?</tr>", comparisons
    ).group(0)
    assert "improvement (CI excludes 0)" in aligned_row
    assert "<th>green</th>" in _section(html, "study-per-class")
    pass_rates = _section(html, "study-pass-rates")
    assert (
        "shift-aligned, seed 0: oracle pass" in pass_rates
        and "significant improvement" in pass_rates
    )
    preserved = re.search(r"Label preservation.*?</table>", pass_rates, re.S).group(0)
    assert "80.0%" in preserved and "83.0%" in preserved and "[-1.0, +6.0]" in preserved
    assert (
        "no significant difference" in preserved and "improvement" not in preserved
    )  # +3 but CI holds 0
    # runs: the shared run appears once (used by two arms), a missing or unreadable one is reported
    assert html.count('<details class="run">') == 4
    moved = re.search(r"<summary>old/place/moved.*?</details>", html, re.DOTALL).group(0)
    assert 'id="run3-samples"' in moved and "not available: run directory not found" not in moved
    assert "shift-aligned (seed 0), shift-base (seed 0)" in html
    assert "not available: run directory not found: runs/gone-seed1" in html
    assert "not available: report: run manifest unreadable" in html
    for anchor, _ in RUN_SECTIONS:
        assert f'id="run0-{anchor}"' in html


# --------------------------------------------------------------------------- CLI


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    from saadi_core import cli

    for target, message in (
        (tmp_path / "missing", "no such directory"),
        (tmp_path, "neither a run"),
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(["report", str(target)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: report:") and message in err and "\n" not in err


def test_cli_report_prints_the_written_path(run_dir, tmp_path, capsys):
    from saadi_core import cli

    target = tmp_path / "out" / "r.html"
    cli.main(["report", str(run_dir), "--out", str(target)])
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_text().startswith("<!DOCTYPE html>")


# --------------------------------------------------------------------------- progress


def test_progress_nested_bars_and_events():
    from saadi_core.progress import RichProgress

    events: list[tuple[str, dict]] = []
    buffer = io.StringIO()
    progress = RichProgress(
        console=Console(file=buffer, width=100, force_terminal=True),
        sink=lambda e, **f: events.append((e, f)),
    )
    for _ in progress.track(range(3), "outer"):
        assert progress._live is not None
        assert list(progress.track(range(2), "inner")) == [0, 1]
        assert len(progress._live.tasks) == 1  # the inner bar is gone, the outer one stays
    assert progress._live is None
    for i in progress.track(range(10), "stopped early"):
        if i == 4:
            break
    assert progress._live is None  # an abandoned bar does not keep the display alive
    finished = {f["task"]: f for e, f in events if e == "progress_finished"}
    assert [e for e, _ in events].count("progress_started") == 5
    assert finished["outer"]["completed"] == 3 and finished["inner"]["completed"] == 2
    assert finished["stopped early"] == finished["stopped early"] | {"completed": 4, "total": 10}
    assert "outer" in buffer.getvalue()


def test_progress_on_a_non_terminal_prints_lines_with_eta():
    from saadi_core.progress import RichProgress

    buffer = io.StringIO()
    progress = RichProgress(console=Console(file=buffer, width=100))
    assert sum(progress.track(range(50), "work")) == sum(range(50))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("work: 5/50 (") and "eta" in lines[0]
    assert lines[-1].startswith("work: 50/50")


def test_progress_quiet_prints_nothing_but_logs():
    from saadi_core.progress import RichProgress

    events: list[str] = []
    buffer = io.StringIO()
    progress = RichProgress(
        console=Console(file=buffer), quiet=True, sink=lambda e, **f: events.append(e)
    )
    assert list(progress.track([1, 2], "quiet")) == [1, 2]
    progress.say("hello")
    assert buffer.getvalue() == "" and events == ["progress_started", "progress_finished"]


# --------------------------------------------------------------------------- headless browser


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian package 'chromium'")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    page = build_report(run_dir, tmp_path / "report.html", registry=_registry())
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
    ]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (2400, 1280)
    assert (
        image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 500
    )  # not a blank page
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for anchor, title in RUN_SECTIONS:
        assert re.search(rf'<section id="{anchor}"><h2>{re.escape(title)}</h2>', dom), title
    assert dom.count("<img") == page.read_text().count("<img") > 20  # every embedded image parsed
