"""A self-contained query that takes far longer than a test or a benchmark waits.

A random 20-60-60-60-2 ReLU network and the property ``Y_0 >= Y_1 + 1.8`` over
[-1, 1]^20. Gradient ascent from 30 random starts reaches ``max(y0 - y1) ~ 1.74``, so the
falsifier finds nothing, the bounds do not decide it, and the MILP (180 unstable ReLUs,
20 inputs, no input splitting) needs well over a minute on 2 cores; Φ_0 over the same
box and ``milp:3`` bounds are slow for the same reason. The CLI's Ctrl-C and deadline
tests and ``benchmarks/cli_latency.py`` use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_IN, HIDDEN = 20, 60
THRESHOLD = 1.8


def write_slow_query(folder: Path) -> tuple[Path, Path]:
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    rng = np.random.default_rng(7)
    layers = [Affine(rng.standard_normal((HIDDEN, N_IN)) / np.sqrt(N_IN),
                     rng.standard_normal(HIDDEN) * 0.1), ReLU(HIDDEN)]
    for _ in range(2):
        layers += [Affine(rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
                          rng.standard_normal(HIDDEN) * 0.1), ReLU(HIDDEN)]
    layers += [Affine(rng.standard_normal((2, HIDDEN)) / np.sqrt(HIDDEN), np.zeros(2))]
    model = save_onnx(Network(layers), folder / "slow.onnx")
    lines = [f"(declare-const X_{i} Real)" for i in range(N_IN)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i in range(N_IN):
        lines += [f"(assert (>= X_{i} -1.0))", f"(assert (<= X_{i} 1.0))"]
    lines += [f"(assert (>= Y_0 (+ Y_1 {THRESHOLD})))"]
    prop = folder / "slow.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    return model, prop


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid`` (Linux ``/proc``)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:       # state, ..., session
            out.append(int(d.name))
    return out
