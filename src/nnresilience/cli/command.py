"""What every long-running command shares, one line each: budget, outputs, child, progress.

A command body looks like this (``nnres verify`` is the full example)::

    with CommandRun("verify", timeout=timeout, quiet=quiet) as run:
        js = run.output(json_out, "--json", inputs=(model, prop))   # validated, not written
        net = load_model(model)                                      # input errors: exit 2
        run.start()                                                  # from here on, a failure
        res = run.in_child(work, net, prop)                          # removes stale outputs
        run.outputs.write_json(js, {...})                            # staged; committed on exit

* ``CommandRun(timeout=T)`` validates T (a positive finite number of seconds or None)
  and counts it from the moment the ``nnres`` process started (:func:`command_started`):
  the promise "ends by T + max(1 s, 5 % of T)" is kept as seen from outside.
* :meth:`CommandRun.in_child` runs the work through
  :func:`nnresilience.killable.run_killable` (killed at the hard deadline or on Ctrl-C,
  with its process group) while a :class:`~nnresilience.progress.LiveStatus` line on
  stderr shows its progress reports -- only on a terminal and without ``--quiet``.
* :attr:`CommandRun.outputs` is an :class:`~nnresilience.cli.output.Outputs`: every
  file is staged and renamed into place when the block ends normally; on an error or an
  interrupt after :meth:`start`, the temp files and the declared targets are removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nnresilience import validate
from nnresilience.cli.app import err_console
from nnresilience.cli.output import Outputs
from nnresilience.killable import Budget, ChildResult, run_killable
from nnresilience.progress import LiveStatus

_STARTED: float | None = None


def set_command_started(t: float | None) -> None:
    """Record when this command started (``nnres`` main: the process start time)."""
    global _STARTED
    _STARTED = t


def command_started() -> float:
    """The start of the current command on the monotonic clock (now, if not recorded)."""
    return _STARTED if _STARTED is not None else time.monotonic()


def show_progress(quiet: bool) -> bool:
    """Progress is drawn only on a terminal, and never with ``--quiet``."""
    return (not quiet) and err_console.is_terminal


class CommandRun:
    """Budget + outputs + killable child + live progress of one command (module doc)."""

    def __init__(self, title: str, timeout: float | None = None, quiet: bool = False,
                 timeout_name: str = "--timeout") -> None:
        self.title = title
        self.budget = Budget(validate.timeout(timeout, timeout_name), command_started())
        self.quiet = quiet
        self.outputs = Outputs()

    def output(self, path: Any, what: str, inputs: tuple = (), allow_stdout: bool = True
               ) -> Any:
        """Declare (and validate) an output file; see :meth:`Outputs.declare`."""
        return self.outputs.declare(path, what, inputs=inputs, allow_stdout=allow_stdout)

    def start(self) -> None:
        """Inputs are checked; the work begins."""
        self.outputs.start()

    def status(self) -> LiveStatus:
        """A live status line for work done in this process (e.g. a campaign loop)."""
        return LiveStatus(self.title, err_console, self.budget, show_progress(self.quiet))

    def in_child(self, fn: Callable[..., Any], *args: Any,
                 on_partial: Callable[[Any], None] | None = None, **kwargs: Any
                 ) -> ChildResult:
        """``fn(reporter, *args, **kwargs)`` in a killable child, with live progress.

        When start-up and loading already used the whole budget, nothing is started: the
        answer is "stopped at the deadline" at once (forking would only add to the
        overrun)."""
        self.start()
        if self.budget.expired():
            return ChildResult(killed="timeout")
        with self.status() as st:
            return run_killable(fn, *args, budget=self.budget, on_progress=st.update,
                                on_partial=on_partial, tick=st.tick, **kwargs)

    def __enter__(self) -> CommandRun:
        self.outputs.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.outputs.__exit__(*exc)
