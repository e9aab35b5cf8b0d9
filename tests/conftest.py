"""Shared fixtures. ``shared_benchmarks`` is ``<repo>/../shared/benchmarks`` or a clean skip."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs a fixed, reproducible set of hypothesis examples (``derandomize``) so a landing
# never depends on a freshly drawn one; locally every run explores new random examples.
# Either way, a failure prints the falsifying example to reproduce.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parents[1]

# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
# in every child (exec keeps SIG_IGN): the Ctrl-C tests would then test nothing but that.
# Python's own handler here means children start with the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def shared_benchmarks_path() -> Path | None:
    """Where the VNN-COMP / CTG benchmark data lives, if present (``NNRES_BENCHMARKS`` wins)."""
    env = os.environ.get("NNRES_BENCHMARKS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "benchmarks")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    path = shared_benchmarks_path()
    if path is None:
        pytest.skip("../shared/benchmarks is absent")
    return path


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
