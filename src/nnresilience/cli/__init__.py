"""The ``nnres`` command line: one Typer app, one module per group of commands.

Each command module (``cli/info.py``, ``cli/verify.py``, ...) registers its commands on
:data:`app` when imported. :func:`main` owns the mapping from outcomes to exit codes
(the list in ``docs/cli.md``):

* 0: the command produced its answer (any verdict, including ``unknown``);
  ``contract check``: every clause holds;
* 1: a failure was found: ``campaign run``: some units failed (listed), the others are
  stored; ``contract check``: some clause fails (a replayed witness breaks it);
* 2: bad input -- an :class:`~nnresilience.errors.NNResError` (unreadable model, VNN-LIB
  syntax error, an option out of range) or a malformed command line; one line
  ``error: ...`` on stderr, no usage text, no traceback;
* 3: a solver failure or an internal error (one line; ``NNRES_DEBUG=1`` shows the
  traceback);
* 4: not finished in the time given: ``campaign run --timeout`` stopped with units left
  (run it again to resume), ``demo``; ``contract check``: no clause fails, some are
  unknown (more time may decide them);
* 130: interrupted (Ctrl-C, or SIGTERM from a batch system).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from typing import Any

from nnresilience.cli.app import app

# Command modules, in the order their commands appear in ``--help``. A module that is
# not there yet (optional part) is skipped silently; an import *error inside* a module
# is not hidden.
COMMAND_MODULES = ("info", "bounds", "verify", "resilience", "contract", "compare", "campaign",
                   "report", "demo")

EXIT_OK = 0
EXIT_FAILED_UNITS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_TIMED_OUT = 4
EXIT_INTERRUPTED = 130
# Every exit code a command can return (docs/cli.md lists exactly these; a test checks).
EXIT_CODES = (EXIT_OK, EXIT_FAILED_UNITS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_TIMED_OUT,
              EXIT_INTERRUPTED)


def _load_commands() -> None:
    for mod in COMMAND_MODULES:
        name = f"nnresilience.cli.{mod}"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    # A batch system stops jobs with SIGTERM: end like Ctrl-C (children killed, 130).
    raise KeyboardInterrupt


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nnres`` console script (``argv=None``: the process's own).

    As the process's own entry point it does not return: it flushes the output and ends
    the process at once (``os._exit``). Interpreter finalisation (collecting ~700 modules)
    takes 0.3-0.8 s on a busy machine, which would break the ``--timeout`` promise for
    short limits; every file is closed and every child is gone by then.
    """
    rc = _main(argv)
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(rc)
    return rc


def _main(argv: list[str] | None) -> int:
    # Deadlines count from the start of the process when this *is* the nnres process;
    # a call from Python (tests, scripts) counts from here.
    import time

    from nnresilience.cli.command import set_command_started
    from nnresilience.errors import NNResError
    from nnresilience.killable import process_start_time

    set_command_started(process_start_time() if argv is None else time.monotonic())
    _load_commands()
    previous = None
    if sys.platform != "win32":
        try:
            previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        except ValueError:  # not the main thread: leave signals alone
            previous = None
    try:
        # Without standalone mode click *returns* the code of ``typer.Exit(code)``.
        rv = app(args=argv, prog_name="nnres", standalone_mode=False)
    except NNResError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        if os.environ.get("NNRES_DEBUG") and getattr(exc, "detail", None):
            print(exc.detail, file=sys.stderr)  # type: ignore[attr-defined]
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # typer/click exit paths (e.g. --help)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:
        # Typer vendors click; match its exception classes by shape, not by import path.
        cls = type(exc).__name__
        if cls == "Exit":
            return int(getattr(exc, "exit_code", 0))
        if cls == "Abort":
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # click's UsageError family (bad option value, unknown option, missing
            # argument): one line naming the problem, exit 2, no usage dump.
            print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if os.environ.get("NNRES_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(NNRES_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if rv == EXIT_INTERRUPTED:
        # typer turns a KeyboardInterrupt inside a command into a returned 130
        print("interrupted", file=sys.stderr)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
