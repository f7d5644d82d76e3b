"""A progress bar on stderr for long store jobs (purge, rekey), drawn only on a terminal.

Implements the store's ``Progress`` protocol with ``rich``; when stderr is
not a terminal (systemd, a pipe, a test) nothing is drawn, so logs and
captured output stay clean.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressBar:
    """``with ProgressBar("purging") as bar: await store.purge_closed(days, progress=bar)``."""

    def __init__(self, what: str) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._progress.add_task(what, total=None)

    def start(self, total: int) -> None:
        """Set the amount of work."""
        self._progress.update(self._task, total=total)

    def advance(self, done: int) -> None:
        """Move the bar on by ``done`` units."""
        self._progress.advance(self._task, done)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()
