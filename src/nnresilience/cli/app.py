"""The shared Typer application object and the two consoles every command prints through.

Output that is not a terminal (a pipe, a file, a CI log) is never hard-wrapped: the
consoles then render at a width no line reaches, so a table row or a message stays on
one line and ``grep`` sees whole names. On a terminal rich wraps to the window as usual.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console, ConsoleDimensions

app = typer.Typer(
    name="nnres",
    help="Verify neural networks (holds / violated / unknown) and measure their maximum "
         "resilience (Phi_m, Xi, minimum perturbation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Width used when the output is not a terminal: wide enough that nothing wraps.
UNWRAPPED_WIDTH = 4000


class _Console(Console):
    """A rich console that does not wrap when its own stream is not a terminal.

    (Rich takes the width from *any* standard stream that is a terminal, or 80; a pipe
    on stdout next to a terminal on stderr would still be wrapped.)"""

    @property
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def make_console(stderr: bool = False, **kwargs: Any) -> Console:
    """A console on stdout (or stderr) that follows the no-wrap rule above."""
    return _Console(stderr=stderr, soft_wrap=False, **kwargs)


console = make_console()
err_console = make_console(stderr=True)


@app.callback()
def _root() -> None:
    """nnres: holds / violated / unknown, and how much perturbation a network tolerates."""


@app.command()
def version() -> None:
    """Print the nnresilience version."""
    from nnresilience import __version__

    console.print(__version__)
