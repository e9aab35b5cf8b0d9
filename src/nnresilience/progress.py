"""Progress reporting for long campaigns: a rich bar with ETA, silence, or JSON lines.

The campaign runner calls three methods — :meth:`Progress.start` once with the number of
units to run, :meth:`Progress.update` once per finished (or failed) unit with a small
JSON-ready event dict, :meth:`Progress.close` at the end — and never prints itself, so
the same runner serves a terminal user (:class:`RichProgress`), a script
(:class:`JsonlProgress`, one JSON object per line on stdout, flushed at once so a pipe
reader sees each answer as it lands) and tests (:class:`QuietProgress`).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import IO, Any


class Progress:
    """Interface (and the silent implementation)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.skipped = 0
        self.started = time.monotonic()

    def start(self, total: int, skipped: int = 0) -> None:
        """``total`` units will run now; ``skipped`` were already in the store."""
        self.total, self.skipped = total, skipped
        self.started = time.monotonic()

    def update(self, event: dict[str, Any]) -> None:
        """One unit finished: ``event['event']`` is ``'done'`` or ``'error'``."""
        self.counts[str(event.get("status") or event.get("event"))] += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class QuietProgress(Progress):
    """Prints nothing (``--quiet``)."""


class JsonlProgress(Progress):
    """One JSON object per finished unit on ``stream`` (``--jsonl``), flushed per line."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stdout

    def update(self, event: dict[str, Any]) -> None:
        super().update(event)
        self.stream.write(json.dumps(event, sort_keys=False, default=str) + "\n")
        self.stream.flush()


class RichProgress(Progress):
    """A rich progress bar on stderr: done/total, counts per verdict, elapsed and ETA.

    The ETA is rich's estimate from the recent completion rate; with parallel workers
    and queries of very different difficulty it is a guide, not a promise.
    """

    def __init__(self, console: Any = None, title: str = "campaign") -> None:
        super().__init__()
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.title = title
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int, skipped: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        super().start(total, skipped)
        if skipped:
            self.console.print(f"{skipped} unit(s) already in the store: skipped")
        if total == 0:
            return
        self._bar = Bar(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.title, total=total, counts="")

    def update(self, event: dict[str, Any]) -> None:
        super().update(event)
        if self._bar is None:
            return
        counts = " ".join(f"{k}:{v}" for k, v in sorted(self.counts.items()))
        self._bar.update(self._task, advance=1, counts=counts)
        if event.get("event") == "error":
            self._bar.console.print(f"[red]error[/red] in {event.get('name', '?')}: "
                                    f"{event.get('message', '')}", markup=True,
                                    highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def make_progress(quiet: bool = False, jsonl: bool = False, stream: IO[str] | None = None,
                  console: Any = None, title: str = "campaign") -> Progress:
    """``--jsonl`` wins over the bar; ``--quiet`` silences the bar (not the JSON lines)."""
    if jsonl:
        return JsonlProgress(stream)
    if quiet:
        return QuietProgress()
    return RichProgress(console=console, title=title)
