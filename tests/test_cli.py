"""CLI: fast lazy start-up, one-line user errors with exit code 2, tracebacks only with --debug."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


def saadi(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "saadi_core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["plugins"], ["plugins", "--json"], ["datasets"], ["run", "--help"]]
)
def test_discovery_and_help_do_not_import_torch(argv):
    code = textwrap.dedent(
        f"""
        import sys
        from saadi_core import cli
        try:
            cli.main({argv!r})
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        heavy = [m for m in ("torch", "diffusers", "timm", "segmentation_models_pytorch", "transformers") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_version_and_help():
    proc = saadi("--version")
    assert proc.returncode == 0 and proc.stdout.strip().startswith("saadi ")
    proc = saadi("--help")
    assert proc.returncode == 0
    for command in ("run", "study", "plugins", "datasets", "validate", "data"):
        assert command in proc.stdout


def test_plugins_json_lists_builtin_and_first_party():
    proc = saadi("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["saadi-core"]["builtin"] and plugins["saadi-core"]["status"] == "loaded"
    for first_party in ("ssd", "selectors", "pairing", "align"):
        assert first_party in plugins
        assert plugins[first_party]["distribution"] == "saadi"
        assert plugins[first_party]["version"]


def test_load_plugins_env_limits_loading():
    proc = saadi("plugins", "--json", env={"SAADI_LOAD_PLUGINS": "pairing"})
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["ssd"]["status"] == "skipped"
    assert plugins["pairing"]["status"] in ("loaded", "failed")


def test_validate_reports_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: tiny\nsede: 3\n")
    proc = saadi("validate", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"error: {bad}:2: sede: unknown key (check the spelling)"
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sede: 3\n")
    proc = saadi("--debug", "validate", str(bad))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "unknown key" in proc.stderr


def test_missing_config_file_and_usage_errors(tmp_path):
    proc = saadi("validate", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "config file not found" in proc.stderr
    proc = saadi("run", "--no-such-flag")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_pool_export_and_preference_pairing_errors_are_one_line(tmp_path):
    proc = saadi("pool", "export", str(tmp_path))
    assert (
        proc.returncode == 2
        and f"{tmp_path} is not a run directory (no manifest.json)" in proc.stderr
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {}}))
    proc = saadi("pool", "export", str(tmp_path))
    assert proc.returncode == 2 and "has no finished 'generate-pool' stage" in proc.stderr
    proc = saadi(
        "run",
        "--runs-dir",
        str(tmp_path),
        "--pairing",
        "preferences",
        "--set",
        f"pairing.options.file={tmp_path}/none.csv",
    )
    assert (
        proc.returncode == 2
        and "none.csv' not found" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_unknown_kind_lists_known_kinds(tmp_path):
    proc = saadi("run", "--dataset", "nope", "--runs-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown dataset kind 'nope'; known:" in proc.stderr
    assert "toy-cls" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_set_requires_key_value(tmp_path):
    proc = saadi("run", "--set", "oops", "--runs-dir", str(tmp_path))
    assert proc.returncode == 2 and "--set expects KEY=VALUE" in proc.stderr
