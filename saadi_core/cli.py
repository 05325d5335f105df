"""The ``saadi`` command line.

Start-up must stay fast (``saadi --help`` ≤ 1 s): this module imports only typer, rich, pydantic
and the light parts of the core; torch and every plugin implementation are imported inside the
commands that need them. :func:`main` is the one top-level error handler: a user error
(:class:`~saadi_core.errors.SaadiError`) becomes one line on stderr and exit code 2; anything else
is reported as an unexpected error with exit code 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from saadi_core import __version__
from saadi_core.errors import SaadiError

app = typer.Typer(
    name="saadi",
    help=(
        "SAADi: train a diffusion generator on a small real dataset, score its samples with a "
        "selector trained on real data, and align the generator with Diffusion-DPO so that its "
        "samples help a downstream classifier or segmenter. Every stage is a plugin "
        "(`saadi plugins`)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Inspect and validate datasets on disk.", no_args_is_help=True)
app.add_typer(data_app, name="data")
pool_app = typer.Typer(
    help="A run's generated pool: export it to rate your own preference pairs.",
    no_args_is_help=True,
)
app.add_typer(pool_app, name="pool")

_state: dict[str, Any] = {
    "debug": os.environ.get("SAADI_DEBUG", "") not in ("", "0"),
    "quiet": False,
}
out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"saadi {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress bars or status lines (results and errors still print).",
        ),
    ] = False,
) -> None:
    _state["debug"] = _state["debug"] or debug
    _state["quiet"] = quiet


def _registry():
    from saadi_core.registry import get_registry

    return get_registry()


# --------------------------------------------------------------------------- plugins


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed plugins: version, kinds they register, lifecycle hooks, load status and errors."""
    registry = _registry()
    if as_json:
        out.print_json(json.dumps([p.as_dict() for p in registry.plugins]))
        return
    table = Table(title="saadi plugins")
    for column in ("plugin", "version", "status", "kinds", "error"):
        table.add_column(column, overflow="fold")
    for info in registry.plugins:
        kinds = "\n".join(f"{cat}: {', '.join(ks)}" for cat, ks in sorted(info.kinds.items()))
        lifecycle = [
            h.removeprefix("saadi_") for h in info.hooks if not h.startswith("saadi_register_")
        ]
        kinds += ("\n" if kinds else "") + (f"hooks: {', '.join(lifecycle)}" if lifecycle else "")
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]"}.get(
            info.status, f"[yellow]{info.status}[/]"
        )
        name = info.name + (" (built-in)" if info.builtin else "")
        table.add_row(name, info.version, status, kinds, info.error)
    out.print(table)


@app.command()
def datasets() -> None:
    """List dataset kinds (embedded toy sets and folder loaders)."""
    registry = _registry()
    table = Table(title="saadi datasets")
    for column in ("kind", "plugin", "description"):
        table.add_column(column, overflow="fold")
    for entry in registry.entries("dataset"):
        table.add_row(entry.kind, entry.plugin, entry.description)
    out.print(table)


# --------------------------------------------------------------------------- config


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="A run or study YAML file.")]) -> None:
    """Check a run or study config: keys, values, plugin kinds and their options."""
    from saadi_core.config import StudyConfig, load_config_file, validate_components

    config, doc = load_config_file(file)
    validate_components(config, _registry(), doc)
    what = "study" if isinstance(config, StudyConfig) else "run"
    out.print(f"[green]ok[/]: {file} is a valid {what} config (profile {config.profile})")


@data_app.command("check")
def data_check(
    path: Annotated[
        Path,
        typer.Argument(help="Dataset root: class folders, or images/ + masks/ + classes.yaml."),
    ],
    layout: Annotated[str, typer.Option(help="auto, classification or segmentation.")] = "auto",
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Check a native layout with its dataset kind (lapgyn4, endoscapes, autolaparo, cholecseg8k, coco)."
        ),
    ] = None,
) -> None:
    """Validate a dataset folder before training: unreadable images, mask mismatches, empty classes."""
    from saadi_core.data.check import check_dataset, check_path

    summary = check_path(path, layout=layout) if dataset is None else check_dataset(dataset, path)
    out.print_json(json.dumps(summary))


@pool_app.command("export")
def pool_export(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (has manifest.json) whose pool was generated.")
    ],
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder to write (default: RUN/pool-export).")
    ] = None,
) -> None:
    """Write every pool sample as PNG (masks in colour beside them) and pool.csv (file, condition,
    seed, index, selector score). Rate them into a CSV with columns winner,loser and align on it:
    saadi run --pairing preferences --set pairing.options.file=prefs.csv (same --name: the pool is reused)."""
    from saadi_core.preferences import export_pool

    written = export_pool(run_dir, output or run_dir / "pool-export")
    out.print(str(written), soft_wrap=True)


# --------------------------------------------------------------------------- run / study


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Run YAML; flags below override it.")
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="Generator kind, e.g. ssd, ssi (default: by dataset task).")
    ] = None,
    selector: Annotated[
        str | None, typer.Option(help="Selector kind, e.g. resnet50, segformer (default: by task).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset kind: toy-cls (default), toy-seg, folder-cls, folder-seg."),
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Root folder for folder-cls / folder-seg datasets.")
    ] = None,
    aligner: Annotated[
        str | None, typer.Option(help="Aligner kind (default diffusion-dpo).")
    ] = None,
    pairing: Annotated[str | None, typer.Option(help="Pairing kind (default threshold).")] = None,
    profile: Annotated[
        str | None, typer.Option(help="tiny (CPU default) or paper (local pretrained weights).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (directory under --runs-dir).")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Where runs are stored (env SAADI_RUNS_DIR).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed of the run.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override any config key: --set generator.options.max_steps=200"
        ),
    ] = None,
    force_stage: Annotated[
        list[str] | None,
        typer.Option(
            "--force-stage",
            help="Recompute this stage even if cached (repeatable; 'sample' = every sample-* stage).",
        ),
    ] = None,
    log_with: Annotated[
        list[str] | None,
        typer.Option(
            help="Experiment tracker for the run's curves: tensorboard, mlflow or wandb (repeat for several)."
        ),
    ] = None,
) -> None:
    """Run the whole SAADi loop: train generator, generate pool, train selector, score, pair,
    align, generate aligned samples, evaluate downstream. Re-running resumes finished stages."""
    from saadi_core.config import build_run_config, deep_merge, parse_assignment

    overrides: dict[str, Any] = {}
    for key, value in (
        ("generator", generator),
        ("selector", selector),
        ("aligner", aligner),
        ("pairing", pairing),
        ("profile", profile),
        ("name", name),
        ("runs_dir", runs_dir),
        ("seed", seed),
        ("device", device),
    ):
        if value is not None:
            overrides[key] = (
                {"kind": value} if key in ("generator", "selector", "aligner", "pairing") else value
            )
    if dataset is not None:
        overrides["dataset"] = {"kind": dataset}
    if data_root is not None:
        overrides = deep_merge(overrides, {"dataset": {"options": {"root": str(data_root)}}})
    if log_with:
        overrides["log_with"] = _tracker_names(log_with)
    for assignment in set_ or []:
        overrides = deep_merge(overrides, parse_assignment(assignment))
    run_config, doc = build_run_config(config, overrides)

    from saadi_core.pipeline import run_pipeline

    result = run_pipeline(
        run_config, _registry(), quiet=_state["quiet"], doc=doc, force_stages=force_stage or ()
    )
    from saadi_core.distributed import is_main_process
    from saadi_core.summary import print_summary

    if is_main_process():  # the other processes of a multi-process run wrote nothing to show
        print_summary(result, out)


def _tracker_names(values: list[str]) -> list[str]:
    """``--log-with a --log-with b`` or ``--log-with a,b`` as one list of tracker names."""
    return [n.strip().lower() for value in values for n in value.split(",") if n.strip()]


@app.command()
def study(
    file: Annotated[Path, typer.Argument(help="Study YAML with a list of arms.")],
    executor: Annotated[
        str,
        typer.Option(
            help="Where the runs execute: local (default), processes, slurm, or a plugin's."
        ),
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (executor processes).")
    ] = None,
    executor_option: Annotated[
        list[str] | None,
        typer.Option(
            "--executor-option", help="An executor option: --executor-option partition=gpu"
        ),
    ] = None,
    log_with: Annotated[
        list[str] | None,
        typer.Option(
            help="Experiment tracker for every arm's run: tensorboard, mlflow or wandb (repeat for several)."
        ),
    ] = None,
) -> None:
    """Run several arms (generators, aligners, mixes) on one dataset and compare them.

    Every (arm, seed) is a run under RUNS_DIR/NAME/runs/, sharing stage results (a generator
    used by two arms is trained once); results go to RUNS_DIR/NAME/study.json. Re-running
    resumes. See examples/studies/ and docs/user-guide.md."""
    from saadi_core.config import (
        StudyConfig,
        deep_merge,
        load_config_file,
        parse_assignment,
        validate_components,
    )

    executor_options: dict[str, Any] = {"workers": workers} if workers is not None else {}
    for assignment in executor_option or []:
        executor_options = deep_merge(executor_options, parse_assignment(assignment))

    config, doc = load_config_file(
        file, {"log_with": _tracker_names(log_with)} if log_with else None
    )
    if not isinstance(config, StudyConfig):
        raise SaadiError(
            f"{file}: not a study config (a study has a list of 'arms'); use `saadi run --config {file}`"
        )
    registry = _registry()
    validate_components(config, registry, doc)
    from saadi_core.study import run_study
    from saadi_core.summary import print_study

    print_study(
        run_study(
            config,
            registry,
            quiet=_state["quiet"],
            doc=doc,
            executor=executor,
            executor_options=executor_options,
        ),
        out,
    )


# --------------------------------------------------------------------------- report


@app.command()
def report(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run directory (has manifest.json) or a study directory (has study.json)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: PATH/report.html)."),
    ] = None,
) -> None:
    """Write a self-contained HTML report (images embedded) of a run or a study and print its path."""
    from saadi_core.report import build_report

    written = build_report(path, output)
    out.print(str(written), soft_wrap=True)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point with the single error handler."""
    # Passive OpenMP waiting: busy-waiting torch threads stall on shared or small CPUs (measured
    # 20-50x slower steps on a loaded 2-core machine). Set before any command imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = app(args=argv, prog_name="saadi", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into a returned 130 when not standalone
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except SaadiError as exc:
        if _state["debug"]:
            err.print_exception()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        from saadi_core.interrupt import interrupted_message

        print(interrupted_message(argv), file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # a command-line usage error (typer's click exceptions)
            sys.exit(exc.exit_code)
        # anything else is a bug, not a user error: say so, traceback on request
        if _state["debug"]:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
