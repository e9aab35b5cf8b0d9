"""PyTorch loader: an ``nn.Sequential`` (possibly nested) becomes a :class:`Network`.

torch is an optional dependency, imported inside the functions only. Supported modules:
Linear, Conv2d, ReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten, Tanh, Sigmoid, Identity,
Dropout (inference: identity) and nested Sequential. Parameters are copied to float64, so
the IR agrees with the float32 torch forward to float32 rounding. Anything else raises
:class:`UnsupportedOperatorError` naming the module: we never guess a module's semantics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.errors import ModelLoadError, UnsupportedOperatorError
from nnresilience.loaders._chain import (
    ChainBuilder,
    avgpool_matrix,
    conv2d_matrix,
    maxpool_groups,
)
from nnresilience.network.layers import LeakyReLU, ReLU, Sigmoid, Tanh
from nnresilience.network.model import Network

SUPPORTED_MODULES: tuple[str, ...] = (
    "AvgPool2d", "Conv2d", "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear",
    "MaxPool2d", "ReLU", "Sequential", "Sigmoid", "Tanh",
)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _flatten_modules(module: Any, prefix: str = "") -> list[tuple[str, Any]]:
    import torch.nn as nn

    if isinstance(module, nn.Sequential):
        out = []
        for name, child in module.named_children():
            out += _flatten_modules(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip(".") or type(module).__name__, module)]


def from_torch(module: Any, input_shape: tuple[int, ...], name: str = "torch",
               source: str | None = None) -> Network:
    """Translate ``module`` for inputs of shape ``input_shape`` (without batch dimension).

    ``input_shape`` is needed because a Sequential does not record it: ``(C, H, W)`` for
    convolutional models, ``(n,)`` for fully connected ones.
    """
    import torch.nn as nn

    shape = tuple(int(s) for s in input_shape)
    b = ChainBuilder((1,) + shape)    # leading batch axis of 1, as torch sees it
    for node, m in _flatten_modules(module):
        kind = type(m).__name__

        def unsupported(detail: str = "", node: str = node, kind: str = kind
                        ) -> UnsupportedOperatorError:
            return UnsupportedOperatorError(kind, node, SUPPORTED_MODULES, detail,
                                            source=source or "")

        if isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        if isinstance(m, nn.Linear):
            W = _np(m.weight)
            if b.shape[-1] != W.shape[1]:
                raise unsupported(f"expects {W.shape[1]} features, gets shape {b.shape[1:]}")
            rows = int(np.prod(b.shape[:-1]))
            if rows != 1:
                raise unsupported(f"Linear on a tensor of shape {b.shape[1:]}")
            c = None if m.bias is None else _np(m.bias)
            b.linear(W, c, b.shape[:-1] + (W.shape[0],))
        elif isinstance(m, nn.Conv2d):
            if len(b.shape) != 4:
                raise unsupported(f"expects (C, H, W) input, gets {b.shape[1:]}")
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise unsupported(f"padding={m.padding!r}, padding_mode={m.padding_mode!r}")
            ph, pw = _pair(m.padding)
            M, out = conv2d_matrix(b.shape[1:], _np(m.weight), _pair(m.stride),
                                   (ph, pw, ph, pw), _pair(m.dilation), int(m.groups))
            c = None if m.bias is None else np.repeat(_np(m.bias), out[1] * out[2])
            b.linear(M, c, (1,) + out)
        elif isinstance(m, nn.MaxPool2d):
            if len(b.shape) != 4 or m.return_indices:
                raise unsupported("needs (C, H, W) input and no indices")
            k = _pair(m.kernel_size)
            ph, pw = _pair(m.padding)
            groups, out = maxpool_groups(b.shape[1:], k, _pair(m.stride or k),
                                         (ph, pw, ph, pw), _pair(m.dilation), bool(m.ceil_mode))
            b.maxpool(groups, (1,) + out)
        elif isinstance(m, nn.AvgPool2d):
            if len(b.shape) != 4 or m.divisor_override is not None:
                raise unsupported("needs (C, H, W) input and no divisor_override")
            k = _pair(m.kernel_size)
            ph, pw = _pair(m.padding)
            M, out = avgpool_matrix(b.shape[1:], k, _pair(m.stride or k), (ph, pw, ph, pw),
                                    bool(m.ceil_mode), bool(m.count_include_pad))
            b.linear(M, None, (1,) + out)
        elif isinstance(m, nn.Flatten):
            nd = len(b.shape)
            s, e = m.start_dim % nd, m.end_dim % nd
            b.reshape(b.shape[:s] + (int(np.prod(b.shape[s:e + 1])),) + b.shape[e + 1:])
        elif isinstance(m, nn.ReLU):
            b.activation(ReLU)
        elif isinstance(m, nn.LeakyReLU):
            if not 0.0 <= float(m.negative_slope) < 1.0:
                raise unsupported(f"negative_slope={m.negative_slope}; need 0 <= k < 1")
            b.activation(LeakyReLU, slope=float(m.negative_slope))
        elif isinstance(m, nn.Tanh):
            b.activation(Tanh)
        elif isinstance(m, nn.Sigmoid):
            b.activation(Sigmoid)
        else:
            raise unsupported()
    return Network(b.finish(), input_shape=shape, name=name, source=source,
                   source_format="torch")


def load_torch(path: str | Path, input_shape: tuple[int, ...] | None = None) -> Network:
    """Load a whole pickled module saved with ``torch.save(module, path)``.

    Note: this uses ``torch.load(weights_only=False)``, which runs pickled code: load only
    files you trust. ``input_shape`` defaults to the ``in_features`` of a leading Linear.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such model file")
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(f"{p}: loading PyTorch files needs the optional 'torch' package "
                             "(pip install nnresilience[torch])") from exc
    try:
        module = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ModelLoadError(f"{p}: not a loadable PyTorch file ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{p}: holds a {type(module).__name__}, not an nn.Module "
                             "(save the whole module, not a state_dict)")
    if input_shape is None:
        first = _flatten_modules(module)[0][1]
        if not isinstance(first, torch.nn.Linear):
            raise ModelLoadError(f"{p}: cannot infer the input shape (first module is "
                                 f"{type(first).__name__}); pass input_shape")
        input_shape = (first.in_features,)
    module.eval()
    return from_torch(module, input_shape, name=p.stem, source=str(p))
