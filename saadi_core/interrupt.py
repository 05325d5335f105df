"""What an interrupted command (Ctrl-C) tells the user: that it stopped, what is kept, and the
command that resumes it. The exit code is 130 (128 + SIGINT), so a script never mistakes an
interrupted run for a finished one."""

from __future__ import annotations

import shlex
import sys

from saadi_core.locks import held_runs


def interrupted_message(argv: list[str] | None = None) -> str:
    """One or two lines for stderr after Ctrl-C."""
    args = sys.argv[1:] if argv is None else argv
    again = "saadi " + " ".join(shlex.quote(a) for a in args)
    runs = held_runs()
    if not runs:
        return f"interrupted: nothing was lost; run `{again}` again to start over"
    where = str(runs[-1]) + (
        f" (and {len(runs) - 1} earlier run(s) of this command)" if len(runs) > 1 else ""
    )
    return f"interrupted: finished stages are kept in {where}; resume with: {again}"
