"""The failure modes of issue 17 (docs/failure-modes.md): one test per case, fast (fake plugins,
in-process where the fix lives in-process; the store's corruption and concurrency cases run as
real processes in test_integrity.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from test_example_plugin import GOOD_PLUGIN, _module, fake_distribution  # noqa: F401 (fixture)
from test_folder_datasets import make_cls_tree, make_seg_tree
from test_pipeline import COLOURS, ColourOracle, FakePlugin
from test_pipeline import config as fake_config

from saadi_core import cli, hookimpl, locks, preflight
from saadi_core.config import (
    YamlDoc,
    load_config_file,
    parse_assignment,
    validate_components,
)
from saadi_core.data.check import check_path
from saadi_core.data.dataset import Dataset, Split
from saadi_core.data.fingerprint import dataset_fingerprint
from saadi_core.data.folders import FolderClsOptions, load_folder_cls, read_class_map
from saadi_core.errors import ConfigError, DataError, PluginError, SaadiError
from saadi_core.pipeline import run_pipeline
from saadi_core.registry import Registry
from saadi_core.summary import print_summary


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code


# --------------------------------------------------------------------------- 1. data content key


class FileOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str
    seed: int = 0


def build_from_file(options: FileOpts) -> Dataset:
    """Two colour classes; how many training images of each comes from a file (the user's data)."""
    n = json.loads(Path(options.root).read_text())["n_train"]
    labels = np.arange(n) % 2

    def split(lab: np.ndarray) -> Split:
        images = (
            ((COLOURS.numpy()[lab][:, None, None, :] + 1) * 127.5)
            .repeat(8, 1)
            .repeat(8, 2)
            .astype(np.uint8)
        )
        return Split(
            images=images, ids=[f"f/{i}" for i in range(len(lab))], labels=lab.astype(np.int64)
        )

    return Dataset(
        "file",
        "classification",
        ["red", "green"],
        split(labels),
        split(np.array([0, 1])),
        oracle=ColourOracle(),
    )


class FileData:
    @hookimpl
    def saadi_register_datasets(self, register):
        register("file-data", build_from_file, options=FileOpts)


def test_changed_dataset_content_invalidates_the_data_stage_and_everything_after(tmp_path):
    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    registry.add_plugin(FileData(), name="file-data")
    data_file = tmp_path / "data.json"
    config = fake_config(
        tmp_path,
        dataset={"kind": "file-data", "options": {"root": str(data_file)}},
        fidelity={"metrics": []},
        aligner=None,
        evaluation={"n_per_condition": 8},
    )
    data_file.write_text('{"n_train": 20}')
    run_pipeline(config, registry, quiet=True)
    data_file.write_text('{"n_train": 30}')  # same options, other content
    changed = run_pipeline(config, registry, quiet=True).store
    stages = changed.manifest["stages"]
    assert (
        not stages["data"]["cached"]
        and not stages["train-generator"]["cached"]
        and not stages["downstream-real-s0"]["cached"]
    )
    assert (
        json.loads(
            (changed.stages_dir / Path(stages["data"]["path"]).name / "dataset.json").read_text()
        )["train"]
        == 30
    )
    data_file.write_text(
        '{"n_train": 20}'
    )  # back to the first content: its results are found again
    back = run_pipeline(config, registry, quiet=True).store.manifest["stages"]
    assert all(s["cached"] for s in back.values())


def test_fingerprint_follows_folder_content_not_mtimes(tmp_path):
    root = make_cls_tree(tmp_path / "d")
    options = FolderClsOptions(root=root, image_size=16, test_fraction=0.3)
    first = dataset_fingerprint(load_folder_cls(options))
    for f in root.rglob("*.png"):
        f.touch()
    assert dataset_fingerprint(load_folder_cls(options)) == first
    shutil.copytree(root / "liver", root / "spleen")  # a class added
    assert dataset_fingerprint(load_folder_cls(options)) != first
    shutil.rmtree(root / "spleen")
    (root / "split.csv").write_text(
        "file,split\n"
        + "\n".join(
            f"{p.relative_to(root).as_posix()},{'test' if p.stem == 'img00' else 'train'}"
            for p in sorted(root.rglob("*.png"))
        )
    )
    assert dataset_fingerprint(load_folder_cls(options)) != first  # a split file


# --------------------------------------------------------------------------- 2. wide images


def test_16_bit_and_float_images_are_scaled_or_refused(tmp_path):
    root = make_cls_tree(tmp_path / "d")
    ramp = np.tile(np.linspace(0, 65535, 32), (32, 1)).astype(np.uint16)
    target = root / "liver" / "img00.png"
    Image.fromarray(ramp).save(target)
    assert Image.open(target).mode.startswith("I")
    dataset = load_folder_cls(FolderClsOptions(root=root, image_size=32, test_fraction=0.3))
    image = np.concatenate([dataset.train.images, dataset.test.images])[
        [*dataset.train.ids, *dataset.test.ids].index("liver/img00.png")
    ]
    assert (
        image.min() == 0 and image.max() == 255 and 100 < image.mean() < 155
    )  # a ramp, not saturated
    tif = root / "liver" / "img01.tif"
    (root / "liver" / "img01.png").unlink()
    Image.fromarray((ramp / 65535.0).astype(np.float32)).save(tif)
    assert check_path(root)["images"] == 12  # floats in [0, 1] are fine
    Image.fromarray((ramp / 10.0).astype(np.float32)).save(tif)
    with pytest.raises(
        DataError,
        match=rf"^cannot read image {tif}: float pixels must lie in \[0, 1\], found 0\.\.6554",
    ):
        check_path(root)


# --------------------------------------------------------------------------- 3. Ctrl-C


def test_ctrl_c_exits_130_and_says_where_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("saadi_core.config.load_config_file", interrupted)
    monkeypatch.setattr(locks, "_run_locks", {})
    assert _exit_code(["validate", "x.yaml"]) == 130
    assert "interrupted: nothing was lost" in capsys.readouterr().err
    locks.lock_run(tmp_path)
    try:
        assert _exit_code(["validate", "x.yaml"]) == 130
        assert (
            f"finished stages are kept in {tmp_path.resolve()}; resume with: saadi validate x.yaml"
            in capsys.readouterr().err
        )
    finally:
        locks.release_run(tmp_path)


# --------------------------------------------------------------------------- 6. several processes


LAUNCHED = {
    "WORLD_SIZE": "2",
    "RANK": "1",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def test_a_half_configured_launch_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    preflight.check_launch(
        LAUNCHED
    )  # torchrun / accelerate launch --multi_gpu: a multi-process run
    preflight.check_launch({"WORLD_SIZE": "1", "RANK": "0"})
    with pytest.raises(SaadiError, match="WORLD_SIZE=2 but MASTER_ADDR, MASTER_PORT not set"):
        preflight.check_launch({"WORLD_SIZE": "2", "RANK": "1"})
    with pytest.raises(SaadiError, match="RANK=1 but WORLD_SIZE is not set"):
        preflight.check_launch({"RANK": "1"})
    for name in (
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _exit_code(["--quiet", "run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set")
        and err.count("\n") == 1
    )
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_study_under_a_launcher_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    study = Path(__file__).resolve().parents[1] / "examples" / "studies" / "quick.yaml"
    monkeypatch.chdir(tmp_path)
    for name, value in LAUNCHED.items():
        monkeypatch.setenv(name, value)
    assert _exit_code(["--quiet", "study", str(study)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: saadi study does not run under a launcher (WORLD_SIZE=2)")
        and err.count("\n") == 1
    )
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- 7. errors found late


def test_wrong_task_and_device_are_config_errors_in_validate(tmp_path):
    from saadi_core.registry import get_registry

    bad = tmp_path / "run.yaml"
    bad.write_text("generator: ssi\nselector: resnet18\n")
    config, doc = load_config_file(bad)
    with pytest.raises(
        ConfigError,
        match=rf"^{bad}:2: selector 'resnet18' needs a classification dataset, but generator 'ssi'",
    ):
        validate_components(config, get_registry(), doc)
    bad.write_text("dataset: toy-seg\ngenerator: ssd\n")
    config, doc = load_config_file(bad)
    with pytest.raises(
        ConfigError,
        match="generator 'ssd' needs a classification dataset, but dataset 'toy-seg' is segmentation",
    ):
        validate_components(config, get_registry(), doc)
    bad.write_text("device: tpu\n")
    with pytest.raises(ConfigError, match=r":1: device: unknown device 'tpu'"):
        load_config_file(bad)


def test_one_class_dataset_and_unwritable_runs_dir_fail_before_any_stage(tmp_path):
    root = make_cls_tree(tmp_path / "d", {"liver": 4})
    with pytest.raises(DataError, match="only one class folder"):
        check_path(root)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    with pytest.raises(SaadiError, match=f"runs directory {blocker}/runs is not writable"):
        run_pipeline(fake_config(tmp_path, runs_dir=str(blocker / "runs")), registry, quiet=True)


# --------------------------------------------------------------------------- 8. user errors, not exceptions


def test_malformed_set_binary_yaml_and_exiting_plugin_are_one_line_errors(
    tmp_path, fake_distribution, monkeypatch
):  # noqa: F811
    with pytest.raises(ConfigError, match=r"^--set seed=\[1,2: the value is not valid YAML"):
        parse_assignment("seed=[1,2")
    binary = tmp_path / "run.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        YamlDoc(binary)
    fake_distribution("exit-dist", {"fakeexit": "import sys\nsys.exit(3)\n"})
    monkeypatch.setenv("SAADI_LOAD_PLUGINS", "fakeexit")
    info = next(p for p in Registry.discover().plugins if p.name == "fakeexit")
    assert info.status == "failed" and info.error == "import failed: the plugin called sys.exit(3)"


# --------------------------------------------------------------------------- 9. unclear messages


def test_third_party_kind_under_a_first_party_entry_name_is_a_visible_conflict(
    fake_distribution, monkeypatch
):  # noqa: F811
    fake_distribution("evil-dist", {"ssd": GOOD_PLUGIN.format(kind="resnet18", name="evil")})
    monkeypatch.setenv("SAADI_LOAD_PLUGINS", "ssd,selectors")
    registry = Registry.discover()
    names = [p.name for p in registry.plugins if not p.builtin]
    assert "ssd" in names and any(n.startswith("ssd (") for n in names)  # both, not one skipped
    with pytest.raises(PluginError, match="registered by more than one plugin"):
        registry.get("selector", "resnet18")
    conflicted = [p for p in registry.plugins if "registered by both" in p.error]
    assert len(conflicted) == 2  # the error shows on both rows of `saadi plugins`


def test_misspelt_hook_fails_the_plugin_even_more_so_when_strict():
    def saadi_register_generator(register):  # singular: not a hook
        register("x", "a:b")

    registry = Registry()
    info = registry.add_plugin(
        _module("typo", saadi_register_generator=saadi_register_generator), name="typo"
    )
    assert info.status == "failed" and "unknown hook(s) saadi_register_generator" in info.error
    with pytest.raises(PluginError, match="unknown hook"):
        Registry(strict=True).add_plugin(
            _module("typo2", saadi_register_generator=saadi_register_generator), name="typo2"
        )


def test_class_map_layouts_lines_and_folders(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  0: background\n  1: tool\n")
    assert read_class_map(path).names == ["background", "tool"]  # nested form accepted
    path.write_text("background: [0, 0, 0]\ntool: [255, 0]\n")
    with pytest.raises(
        DataError,
        match=rf"^class map {path}:2: entry 'tool' does not fit a layout; use .*docs/datasets.md",
    ):
        read_class_map(path)
    path.write_text("0: background\n1: tool\n1: other\n")
    with pytest.raises(DataError, match=rf"^{path}:3: key '1' is given twice"):
        read_class_map(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        read_class_map(path)
    root = make_seg_tree(tmp_path / "seg")
    (root / "split-dir").mkdir()
    with pytest.raises(DataError, match="split file .*split-dir is a folder"):
        check_path(root, split_file="split-dir")
    with pytest.raises(ConfigError, match="is a folder"):
        YamlDoc(tmp_path)


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\nevaluation:\n  scales: [1]\n  scales: [2]\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: key 'scales' is given twice"):
        load_config_file(path)


def test_cli_says_aligned_equals_base_when_validation_kept_the_base():
    summary = {
        "run": "r",
        "selector_pass": {
            "base_rate": 0.5,
            "aligned_rate": 0.5,
            "difference_points": 0.0,
            "fail_to_pass": 0,
            "pass_to_fail": 0,
            "p_value": 1.0,
            "verdict": "no significant change",
        },
        "alignment": {"aligned_equals_base": True},
    }
    console = Console(record=True, width=200)
    print_summary(type("R", (), {"summary": summary, "session": None})(), console)
    assert "aligned = base" in console.export_text()
    summary["alignment"]["aligned_equals_base"] = False
    console = Console(record=True, width=200)
    print_summary(type("R", (), {"summary": summary, "session": None})(), console)
    assert "aligned = base" not in console.export_text()


SLEEPY_PLUGIN = """
    from saadi_core import hookimpl

    @hookimpl
    def saadi_register_generators(register):
        register("sleepy", "sleepy_impl:Sleepy", task="classification")
"""
SLEEPY_IMPL = """
    import time
    from pathlib import Path
    from saadi_core.interfaces import Generator

    class Sleepy(Generator):
        def fit(self, dataset):
            Path(__file__).with_name("fitting").write_text("")
            time.sleep(120)
        def conditions(self, dataset): return []
        def sample(self, conditions, n_per_condition, seed): return []
        def save(self, path): pass
        def load(self, path): pass
"""


@pytest.mark.slow
def test_ctrl_c_during_a_real_run_exits_130_and_resume_keeps_finished_stages(
    tmp_path, fake_distribution
):  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    fake_distribution("sleepy-dist", {"sleepy": SLEEPY_PLUGIN})
    site = tmp_path / "site"
    (site / "sleepy_impl.py").write_text(textwrap.dedent(SLEEPY_IMPL))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "saadi_core.cli",
        "--quiet",
        "run",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "r",
        "--generator",
        "sleepy",
        "--selector",
        "resnet18",
        "--set",
        "dataset.options.n_train=20",
        "--set",
        "dataset.options.n_test=10",
    ]
    # a shell that starts CI in the background hands its children SIGINT *ignored*, and Python
    # then installs no KeyboardInterrupt handler: give the run the default, as a terminal would
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 90
    while not (site / "fitting").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (site / "fitting").exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = (tmp_path / "runs" / "r").resolve()
    assert f"interrupted: finished stages are kept in {run}; resume with: saadi --quiet run" in err
    stages = sorted(
        p.name.rsplit("-", 1)[0] for p in (run / "stages").iterdir() if not p.name.startswith(".")
    )
    assert stages == ["data"]  # the finished stage is kept, the interrupted one left no temp dir
    assert not list((run / "stages").glob(".tmp-*"))


def test_folder_given_for_preferences_file_says_so(tmp_path):
    from saadi_pairing.options import PreferenceOptions

    with pytest.raises(ValueError, match="is a folder"):
        PreferenceOptions(file=tmp_path)
