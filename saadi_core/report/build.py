"""``build_report``: one self-contained HTML file for a run or a study directory."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from saadi_core.report.data import detect, load_run, load_study
from saadi_core.report.markup import page, section
from saadi_core.report.run_sections import run_sections
from saadi_core.report.study_sections import study_sections
from saadi_core.store import atomic_write_text

REPORT_FILE = "report.html"


def build_report(path: Path, out: Path | None = None, registry: Any = None) -> Path:
    """Write the report of the run or study at ``path`` and return the file written.

    ``out`` defaults to ``report.html`` inside ``path`` (a directory given as ``out`` gets that
    name too). ``registry`` is used only to rebuild the dataset for the memorisation section's real
    images (default: the installed plugins). A path that is neither a run nor a study directory
    raises :class:`~saadi_core.errors.SaadiError`; anything missing inside one is reported in the
    page as "not available".
    """
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if detect(path) == "study":
        study = load_study(path)
        sections = study_sections(study, registry=registry)
        title = f"SAADi study report: {study.study.get('name') or path.name}"
    else:
        run = load_run(path, registry=registry)
        sections = run_sections(run)
        title = f"SAADi run report: {run.name}"
    body = "".join(section(s.anchor, s.title, s.body) for s in sections)
    html = page(
        title, [(s.anchor, s.title) for s in sections], body, subtitle=f"{path} · generated {stamp}"
    )
    target = Path(out) if out is not None else path / REPORT_FILE
    if target.is_dir():
        target = target / REPORT_FILE
    atomic_write_text(target, html)
    target.chmod(0o644)  # a page to open and share, not a private temp file
    return target
