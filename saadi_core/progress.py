"""Progress reporting: rich bars for people, JSON lines for machines.

Plugins receive a :class:`ProgressReporter` through their ``RunContext`` and never print
themselves, so ``--quiet`` silences everything at one place and every event also lands in the
run's ``events.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """A :class:`~saadi_core.interfaces.ProgressReporter` drawing rich bars (with ETA) and
    forwarding events to ``sink`` (the run store's event log).

    One live display holds every bar: a ``track`` started inside another (the sampling that a
    DPO validation step runs, say) becomes a second line that disappears when it ends, so the
    console keeps one finished line per top-level task instead of one per inner call. On a
    console that is not a terminal, plain lines with elapsed time and ETA replace the bars. Each
    ``track`` logs ``progress_started`` and ``progress_finished`` (items completed, seconds) —
    also when the consumer stops early (early stopping) and under ``--quiet``.
    """

    def __init__(
        self,
        console: Console | None = None,
        quiet: bool = False,
        sink: Callable[..., None] | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.sink = sink
        self._live: Progress | None = None

    def _columns(self) -> list[Any]:
        return [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]

    def track(
        self, iterable: Iterable[Any], description: str, total: int | None = None
    ) -> Iterator[Any]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.log("progress_started", task=description, total=total)
        started = time.perf_counter()
        completed = 0
        if self.quiet:
            shown: Iterator[Any] = iter(iterable)
        elif self.console.is_terminal:
            shown = self._bars(iterable, description, total)
        else:
            shown = self._lines(iterable, description, total, started)
        try:
            for item in shown:
                yield item
                completed += 1
        finally:
            if hasattr(shown, "close"):
                shown.close()  # ends the bar now when the consumer stopped early
            self.log(
                "progress_finished",
                task=description,
                total=total,
                completed=completed,
                seconds=round(time.perf_counter() - started, 3),
            )

    def _bars(self, iterable: Iterable[Any], description: str, total: int | None) -> Iterator[Any]:
        outermost = self._live is None
        if outermost:
            self._live = Progress(*self._columns(), console=self.console, transient=False)
            self._live.start()
        live = self._live
        task = live.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                live.advance(task)
        finally:
            if outermost:
                live.stop()
                self._live = None
            else:
                live.remove_task(task)

    def _lines(
        self, iterable: Iterable[Any], description: str, total: int | None, started: float
    ) -> Iterator[Any]:
        """Plain status lines for a console that is not a terminal (CI logs, ``nohup … > log``):
        a live bar there shows nothing until it ends, so print every tenth of the way with
        elapsed time and ETA."""
        step = max(1, (total or 0) // 10)
        for done, item in enumerate(iterable, start=1):
            yield item
            if done % step == 0 or done == total:
                elapsed = time.perf_counter() - started
                if total:
                    eta = elapsed / done * (total - done)
                    self.console.print(
                        f"{description}: {done}/{total} ({elapsed:.0f} s, eta {eta:.0f} s)",
                        highlight=False,
                    )
                elif done % 100 == 0:
                    self.console.print(f"{description}: {done} ({elapsed:.0f} s)", highlight=False)

    def log(self, event: str, **fields: Any) -> None:
        if self.sink is not None:
            self.sink(event, **fields)

    def say(self, message: str) -> None:
        """A human-readable status line (suppressed by ``--quiet``)."""
        if not self.quiet:
            self.console.print(message)
