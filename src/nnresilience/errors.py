"""The exception hierarchy of nnresilience and the exit code of each.

Every error a user can cause (a bad model file, an unsupported operator, a malformed
VNN-LIB line, an input of the wrong size) is a subclass of :class:`NNResError`. The CLI
prints ``error: <message>`` on one line and exits with ``exit_code``; library users catch
the specific class. Internal invariants use ``assert``, never these classes.
"""

from __future__ import annotations


class NNResError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is the CLI status."""

    exit_code: int = 2


class ModelLoadError(NNResError):
    """A model file is missing, truncated or not a valid model of the expected format."""


class UnsupportedOperatorError(ModelLoadError):
    """The model uses an operator (or an operator attribute) we cannot translate exactly."""

    def __init__(self, op_type: str, node_name: str, supported: list[str] | tuple[str, ...],
                 detail: str = "", source: str = "") -> None:
        self.op_type = op_type
        self.node_name = node_name
        self.supported = tuple(sorted(supported))
        where = f"{source}: " if source else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{where}unsupported operator {op_type!r} at node {node_name!r}{extra}; "
            f"supported operators: {', '.join(self.supported)}"
        )


class SpecParseError(NNResError):
    """A property file (VNN-LIB) is malformed; the message names file, line and column."""

    def __init__(self, message: str, path: str = "", line: int | None = None,
                 column: int | None = None) -> None:
        self.path, self.line, self.column = path, line, column
        loc = path or "<string>"
        if line is not None:
            loc += f":{line}"
            if column is not None:
                loc += f":{column}"
        super().__init__(f"{loc}: {message}")


class ShapeMismatchError(NNResError):
    """An input, a property or a layer does not have the size the network expects."""


class InputDataError(NNResError):
    """A data file (.npy/.csv) cannot be read or holds non-finite values."""


class BackendUnavailableError(NNResError):
    """The requested solver backend is not installed (or lacks a needed capability)."""


class SolverFailure(NNResError):
    """A solver ended in a state we cannot interpret soundly (numerical trouble, crash)."""

    exit_code = 3


class EngineUnsupportedError(NNResError):
    """The chosen engine cannot handle this network or property (e.g. arctan in Reluplex)."""


class InfeasibleQueryError(NNResError):
    """An optimisation query has no feasible point, e.g. alpha above the attainable maximum."""


class StoreError(NNResError):
    """The campaign store is unreadable or was written by an incompatible version."""


class InvalidArgumentError(NNResError):
    """An argument is out of its range: a timeout that is not a positive finite number,
    ``workers < 1``, ``alpha < 1``, ``k`` outside ``1..classes-1``, a label that is not a
    class, a missing input file, an output path that is a directory. Raised by
    :mod:`nnresilience.validate` *before* any work starts or any output file is touched."""


class InternalError(NNResError):
    """A bug or a crash of a worker process that is not the user's doing (exit code 3);
    the CLI prints one line, ``NNRES_DEBUG=1`` shows the traceback."""

    exit_code = 3
