"""``verify_divided``: a thin call of :func:`nnresilience.verify.verify` with an executor.

Deciding one property on several workers is the search's job now: ``verify(...,
executor=...)`` shares the frontier of its branch-and-bound search between the workers
(:mod:`nnresilience.search.parallel`), which explores about as many domains as the serial
search, where the former fixed up-front sub-boxes explored more. This name stays for the
code and scripts that call it.
"""

from __future__ import annotations

from typing import Any

from nnresilience.results import VerificationResult
from nnresilience.spec.property import Property


def verify_divided(network, prop: Property, executor=None, parts: int | None = None,
                   engine: str = "auto", timeout: float | None = None,
                   strategy: str = "adaptive", score: str = "influence", prune: bool = True,
                   **verify_kwargs: Any) -> VerificationResult:
    """``verify(network, prop, engine=engine, timeout=timeout, executor=executor, ...)``.

    ``executor``: an :class:`~nnresilience.parallel.Executor` (the caller owns it) or a
    spec for :func:`~nnresilience.parallel.make_executor` (``2``, ``'dask:2'``, ...; its
    workers are created for the query and killed when it ends). ``parts``, ``strategy``,
    ``score`` and ``prune`` configured the former up-front split and are ignored.
    """
    del parts, strategy, score, prune
    from nnresilience.verify import verify

    return verify(network, prop, engine=engine, timeout=timeout, executor=executor,
                  **verify_kwargs)
