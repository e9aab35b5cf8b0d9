"""Output files of a command: validated first, written atomically, never left stale.

A command declares every file it may write *before* it starts working
(:meth:`Outputs.declare`, which validates the path through
:func:`nnresilience.validate.output_file`), stages the contents while it runs
(:meth:`Outputs.write`: a hidden sibling temp file, so a full disk shows up early) and
commits them together at the end (:meth:`Outputs.commit`: one ``os.replace`` per file,
plus removal of the files this answer makes stale, e.g. an old counterexample when the
property now holds). Used as a context manager, a command that fails or is interrupted
after it started removes its temp files *and* the targets it was asked to write, so no
file from an earlier run can be mistaken for this run's answer; a command stopped by an
input error before it started leaves every file untouched.

JSON is strict everywhere (:func:`json_text`): numpy values become plain numbers, and
``inf``/``-inf``/``nan`` become ``null`` (RFC 8259 has no such numbers; Python's
``Infinity`` breaks other parsers). ``-`` as a file name means stdout, written at commit
time so nothing else is interleaved with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from nnresilience.io import json_text, jsonable, write_atomic  # noqa: F401 - re-exported

STDOUT = "-"


def emit_json(data: Any, target: str | Path | None) -> None:
    """Write ``data`` as strict JSON to ``target`` ('-' or None = stdout) atomically."""
    text = json_text(data)
    if target is None or str(target) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(Path(target), text)


class Outputs:
    """The files one command run writes; see the module docstring for the life cycle."""

    def __init__(self) -> None:
        self._declared: dict[Path, str] = {}
        self._staged: dict[Path, Path] = {}
        self._drop: set[Path] = set()
        self._stdout: list[str] = []
        self.started = False
        self.committed = False

    # ------------------------------------------------------------------ set-up
    def declare(self, path: str | Path | None, what: str, inputs: tuple = (),
                allow_stdout: bool = True) -> str | Path | None:
        """Validate an output path given on the command line; ``None`` passes through,
        ``'-'`` means stdout (if allowed). Call before :meth:`start`."""
        from nnresilience import validate
        from nnresilience.errors import InvalidArgumentError

        if path is None:
            return None
        if str(path) == STDOUT:
            if not allow_stdout:
                raise InvalidArgumentError(f"{what}: '-' (stdout) is not allowed here")
            return STDOUT
        p = validate.output_file(path, what, inputs)
        for other, other_what in self._declared.items():
            if other == p.resolve():
                raise InvalidArgumentError(f"{what} and {other_what} are the same file {p}")
        self._declared[p.resolve()] = what
        return p

    def start(self) -> None:
        """Inputs are valid, work begins: from now on a failure removes stale targets."""
        self.started = True

    # ------------------------------------------------------------------ staging
    def write(self, target: str | Path | None, data: str | bytes) -> None:
        """Stage ``data`` (text, or bytes such as an ``.npz``) for ``target`` (``'-'`` =
        stdout at commit, text only; None = no-op)."""
        if target is None:
            return
        if str(target) == STDOUT:
            if not isinstance(data, str):
                raise TypeError("only text can be written to stdout")
            self._stdout.append(data)
            return
        final = Path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        self._staged[final] = tmp
        self._drop.discard(final)

    def write_json(self, target: str | Path | None, data: Any) -> None:
        """Stage strict JSON (see :func:`json_text`)."""
        if target is not None:
            self.write(target, json_text(data))

    def remove(self, target: str | Path | None) -> None:
        """At commit, delete ``target`` if it exists (an answer that makes it stale)."""
        if target is None or str(target) == STDOUT:
            return
        final = Path(target)
        tmp = self._staged.pop(final, None)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._drop.add(final)

    # ------------------------------------------------------------------ ending
    def commit(self) -> None:
        """Rename every staged file into place, delete stale ones, print stdout JSON."""
        for final, tmp in self._staged.items():
            os.replace(tmp, final)
        self._staged.clear()
        for final in self._drop:
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
        self._drop.clear()
        if self._stdout:
            sys.stdout.write("".join(self._stdout))
            sys.stdout.flush()
            self._stdout.clear()
        self.committed = True

    def abort(self) -> None:
        """Remove temp files; if work had started, remove the declared targets too."""
        for tmp in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()
        self._stdout.clear()
        if self.started:
            for final in self._declared:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    final.unlink()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # typer.Exit (a chosen exit code, e.g. 4 = campaign stopped by --timeout) is an
        # ordinary end: what was staged is this run's answer.
        if exc_type is None or type(exc).__name__ == "Exit":
            if not self.committed:
                self.commit()
        else:
            self.abort()
