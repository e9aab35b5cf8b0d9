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


# --------------------------------------------------------------- single long commands
# Order and labels of the fields a progress report may carry (the engines send dicts
# such as {"phase", "open", "closed", "best_lower", "elapsed", "time_left"} for branch
# and bound, {"phase", "cls", "lower", "upper", ...} for Φ_m); other scalar fields are
# shown as key=value after them.
_FIELDS = (("phase", "{}"), ("item", "{}"), ("cls", "class {}"), ("sample", "sample {}"),
           ("done", "done {}"), ("open", "open {}"), ("closed", "closed {}"),
           ("domains", "domains {}"), ("best_lower", "best lower {}"))
_SKIP = {"elapsed", "time_left", "lower", "upper", "total"}


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe(info: dict[str, Any] | str) -> str:
    """One line of text for a progress report (a dict from an engine, or a message)."""
    if not isinstance(info, dict):
        return str(info)
    parts: list[str] = []
    for key, fmt in _FIELDS:
        if info.get(key) is not None:
            v = info[key]
            if key == "done" and info.get("total") is not None:
                v = f"{v}/{info['total']}"
            parts.append(fmt.format(_num(v)))
    lo, hi = info.get("lower"), info.get("upper")
    if lo is not None or hi is not None:
        parts.append(f"interval [{_num(lo) if lo is not None else '-'}, "
                     f"{_num(hi) if hi is not None else '-'}]")
    shown = {k for k, _ in _FIELDS} | _SKIP
    for k, v in info.items():
        if k not in shown and isinstance(v, (int, float, str)) and not isinstance(v, bool):
            parts.append(f"{k}={_num(v)}")
    return "  ".join(parts)


class LiveStatus:
    """A one-line live status of a single long command on stderr (rich, transient).

    Shows the command's title, the latest progress report (:func:`describe`), the time
    elapsed and the time left of the command's budget. It draws only when ``enabled``
    (the CLI passes "stderr is a terminal and not ``--quiet``"); otherwise every method
    is a no-op, so callers never test for it.
    """

    def __init__(self, title: str, console: Any = None, budget: Any = None,
                 enabled: bool = True) -> None:
        self.title = title
        self.budget = budget
        self.enabled = enabled
        self.console = console
        self.text = "starting"
        self._live: Any = None
        self._t0 = time.monotonic()

    def __enter__(self) -> LiveStatus:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, transient=True,
                              refresh_per_second=8, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        return self

    def update(self, info: dict[str, Any] | str) -> None:
        """A new progress report (dict or text)."""
        self.text = describe(info) or self.text
        self.tick()

    def tick(self) -> None:
        """Refresh the clock part of the line."""
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.text import Text

        elapsed = time.monotonic() - (getattr(self.budget, "started", None) or self._t0)
        clock = f"{elapsed:.1f} s"
        left = self.budget.remaining() if self.budget is not None else None
        if left is not None:
            clock += f", {left:.1f} s left"
        line = Text.assemble((f"{self.title} ", "bold"), (self.text, ""), (f"  [{clock}]",
                                                                          "dim"))
        line.no_wrap = True
        line.overflow = "ellipsis"
        return line

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
