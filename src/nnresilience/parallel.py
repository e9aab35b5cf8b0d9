"""Executors: one interface for serial, local-process and Dask execution.

Work units are top-level functions of picklable arguments (a class m, a sample, a
neuron's bound, a subproblem), so the same call runs in-process, in a process pool or on
a Dask cluster. ``map`` yields results *as they complete* as ``(index, result)`` pairs so
callers can commit each answer at once and cancel the rest.

Solvers here gain nothing from a second thread (measured: CPU time ~ wall time), so
parallelism is by processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Executor:
    """Base interface. Use as a context manager so workers are always shut down."""

    name = "base"
    workers = 1

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> cf.Future:
        raise NotImplementedError

    def map(self, fn: Callable, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item; yield ``(index, result)`` in completion order."""
        futures = {self.submit(fn, item): i for i, item in enumerate(items)}
        self._pending = set(futures)
        for fut in cf.as_completed(futures):
            self._pending.discard(fut)
            yield futures[fut], fut.result()

    def cancel(self) -> None:
        for fut in getattr(self, "_pending", set()):
            fut.cancel()

    def shutdown(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()
        self.shutdown()


class InlineExecutor(Executor):
    """Runs each task at submission, in this process (the serial reference)."""

    name = "inline"

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut

    def map(self, fn: Callable, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        # Lazily, so a caller that stops early (first counterexample) skips the rest.
        for i, item in enumerate(items):
            yield i, fn(item)


class ProcessExecutor(Executor):
    """A local process pool (``spawn`` start method: safe with solver libraries)."""

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing as mp

        self.workers = workers or os.cpu_count() or 1
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> cf.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_executor(spec: str | int | None = None) -> Executor:
    """``None``/``'inline'``/``1`` → serial; an int N>1 or ``'processes'`` → process pool."""
    if spec in (None, "inline", "serial", 1, "1"):
        return InlineExecutor()
    if spec == "processes":
        return ProcessExecutor()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return ProcessExecutor(int(spec))
    raise ValueError(f"unknown executor {spec!r}: use 'inline', 'processes' or a worker count")
