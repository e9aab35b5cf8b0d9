"""The ``nnres`` command line: one Typer app, one module per group of commands.

Each command module (``cli/info.py``, ``cli/verify.py``, ...) registers its commands on
:data:`app` when imported. :func:`main` owns the mapping from exceptions to exit codes:
a :class:`~nnresilience.errors.NNResError` prints one line ``error: ...`` on stderr and
exits with its ``exit_code`` (2 for bad input); Ctrl-C exits 130.
"""

from __future__ import annotations

import importlib
import sys

from nnresilience.cli.app import app

# Command modules, in the order their commands appear in ``--help``. A module that is
# not there yet (optional part) is skipped silently; an import *error inside* a module
# is not hidden.
COMMAND_MODULES = ("info", "bounds", "verify", "resilience", "contract", "compare", "campaign", "report", "demo")  # noqa: E501


def _load_commands() -> None:
    for mod in COMMAND_MODULES:
        name = f"nnresilience.cli.{mod}"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nnres`` console script."""
    from nnresilience.errors import NNResError

    _load_commands()
    try:
        # Without standalone mode click *returns* the code of ``typer.Exit(code)``.
        rv = app(args=argv, prog_name="nnres", standalone_mode=False)
    except NNResError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exit paths (e.g. --help)
        return int(exc.code or 0)
    except Exception as exc:
        # Typer vendors click; match its exception classes by shape, not by import path.
        cls = type(exc).__name__
        if cls == "Exit":
            return int(getattr(exc, "exit_code", 0))
        if cls == "Abort":
            print("aborted", file=sys.stderr)
            return 130
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return 2
        raise
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
