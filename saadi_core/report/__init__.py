"""The HTML report of a run or a study (``saadi report RUN_OR_STUDY``).

Modules: :mod:`~saadi_core.report.data` reads the run/study directory (tolerating missing parts),
:mod:`~saadi_core.report.figures` and :mod:`~saadi_core.report.images` make PNGs,
:mod:`~saadi_core.report.markup` escapes and assembles HTML, the ``*_sections`` modules decide
what each section shows, :mod:`~saadi_core.report.build` writes the file.
"""

from saadi_core.report.build import REPORT_FILE, build_report

__all__ = ["REPORT_FILE", "build_report"]
