"""Model loaders: a file becomes a :class:`~nnresilience.network.model.Network`.

``load_network(path)`` picks the loader by suffix: ``.onnx`` (primary; VNN-COMP networks),
``.nnet`` (ACAS Xu's native text format; raw inputs, normalisation folded in) and
``.pt``/``.pth`` (a whole pickled PyTorch module; optional ``torch`` dependency; runs pickle,
so trusted files only).
"""

from __future__ import annotations

from pathlib import Path

from nnresilience.errors import ModelLoadError
from nnresilience.network.model import Network

FORMATS: dict[str, str] = {".onnx": "onnx", ".nnet": "nnet", ".pt": "torch", ".pth": "torch"}


def load_network(path: str | Path, **options) -> Network:
    """Load a model file by suffix; ``options`` go to the format's loader
    (``normalize=`` for NNet, ``input_shape=`` for PyTorch)."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ModelLoadError(f"{p}: unknown model format {p.suffix or '(no suffix)'!r}; "
                             f"supported suffixes: {', '.join(FORMATS)}")
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such model file")
    if fmt == "onnx":
        from nnresilience.loaders.onnx import load_onnx

        return load_onnx(p, **options)
    if fmt == "nnet":
        from nnresilience.loaders.nnet import load_nnet

        return load_nnet(p, **options)
    from nnresilience.loaders.torch import load_torch

    return load_torch(p, **options)


__all__ = ["FORMATS", "load_network"]
