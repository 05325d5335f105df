"""Progress reporting: rich bars for people, JSON lines for machines.

Plugins receive a :class:`ProgressReporter` through their ``RunContext`` and never print
themselves, so ``--quiet`` silences everything at one place and every event also lands in the
run's ``events.jsonl``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichProgress:
    """A :class:`~saadi_core.interfaces.ProgressReporter` drawing one rich bar per ``track`` call
    (with ETA) and forwarding ``log`` events to ``sink`` (the run store's event log)."""

    def __init__(self, console: Console | None = None, quiet: bool = False, sink: Callable[..., None] | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.sink = sink

    def track(self, iterable: Iterable[Any], description: str, total: int | None = None) -> Iterable[Any]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        if self.sink is not None:
            self.sink("progress_started", task=description, total=total)
        if self.quiet:
            yield from iterable
            return
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in iterable:
                yield item
                bar.advance(task)

    def log(self, event: str, **fields: Any) -> None:
        if self.sink is not None:
            self.sink(event, **fields)

    def say(self, message: str) -> None:
        """A human-readable status line (suppressed by ``--quiet``)."""
        if not self.quiet:
            self.console.print(message)
