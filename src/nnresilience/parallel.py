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
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Executor:
    """Base interface. Use as a context manager so workers are always shut down."""

    name = "base"
    workers = 1

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> cf.Future:
        raise NotImplementedError

    def map(self, fn: Callable, items: Iterable[Any], timeout: float | None = None
            ) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item; yield ``(index, result)`` in completion order.

        ``timeout`` (seconds, for the whole map) raises :class:`TimeoutError` when results
        are still missing at the deadline; the caller then calls :meth:`cancel` or
        :meth:`terminate`.
        """
        futures = {self.submit(fn, item): i for i, item in enumerate(items)}
        self._pending = set(futures)
        for fut in cf.as_completed(futures, timeout=timeout):
            self._pending.discard(fut)
            yield futures[fut], fut.result()

    def cancel(self) -> None:
        """Cancel every task of the last :meth:`map` that has not started yet."""
        for fut in getattr(self, "_pending", set()):
            fut.cancel()

    def shutdown(self) -> None:
        """Release the workers after the running tasks finish."""

    def terminate(self) -> None:
        """Cancel pending tasks and stop the workers *now*, killing running tasks.

        Used on a global timeout and on Ctrl-C, where waiting for a long solver call would
        defeat the purpose; no worker process outlives this call.
        """
        self.cancel()
        self.shutdown()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        # Leaving on an exception (Ctrl-C, timeout, a failed task) must not wait for
        # running tasks; a normal exit lets them finish.
        if exc_type is not None:
            self.terminate()
        else:
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

    def map(self, fn: Callable, items: Iterable[Any], timeout: float | None = None
            ) -> Iterator[tuple[int, Any]]:
        # Lazily, so a caller that stops early (first counterexample) skips the rest. A
        # running task cannot be interrupted in-process: the deadline is checked between
        # tasks.
        deadline = None if timeout is None else time.monotonic() + timeout
        for i, item in enumerate(items):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"inline map: deadline of {timeout:g} s passed")
            yield i, fn(item)


def limit_blas_threads(n: int = 1) -> None:
    """Cap BLAS/OpenMP thread pools of this process at ``n`` threads.

    Environment variables cover libraries loaded later; threadpoolctl (when installed)
    also caps the ones numpy/scipy already loaded.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(n)


def _init_worker(blas_threads: int | None, initializer: Callable[..., Any] | None,
                 initargs: tuple) -> None:
    """Process-pool initializer: BLAS cap, then the caller's own initializer."""
    if blas_threads is not None:
        limit_blas_threads(blas_threads)
    if initializer is not None:
        initializer(*initargs)


class ProcessExecutor(Executor):
    """A local process pool (``spawn`` start method: safe with solver libraries)."""

    name = "processes"

    def __init__(self, workers: int | None = None, blas_threads: int | None = 1,
                 initializer: Callable[..., Any] | None = None, initargs: tuple = ()) -> None:
        """``blas_threads``: cap of BLAS/OpenMP threads in each worker (default 1: the
        workers themselves are the parallelism, and N workers x M BLAS threads on N cores
        only oversubscribe them; ``None`` leaves the libraries' defaults).
        ``initializer(*initargs)`` runs in each worker after that cap is applied."""
        import multiprocessing as mp

        self.workers = workers or os.cpu_count() or 1
        self._pool = cf.ProcessPoolExecutor(
            self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
            initargs=(blas_threads, initializer, tuple(initargs)))

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> cf.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        """Kill the pool's worker processes (running tasks die with them) and reap them."""
        self.cancel()
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        # shutdown() forgets the manager thread; keep it to wait for it below
        manager = getattr(self._pool, "_executor_manager_thread", None)
        for p in procs:
            if p.is_alive():
                p.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():  # pragma: no cover - SIGTERM ignored
                p.kill()
                p.join(timeout=5)
        # The pool's manager thread marks the killed tasks' futures as failed; it does so
        # asynchronously, so wait for it: callers may rely on every future being done.
        if manager is not None:
            manager.join(timeout=5)


class DaskExecutor(Executor):
    """Dask distributed: a :class:`distributed.LocalCluster` or an existing scheduler.

    ``workers=N`` starts a local cluster of N single-threaded worker *processes* (solvers
    gain nothing from threads; processes also isolate solver crashes). ``scheduler=
    'tcp://host:port'`` joins a running cluster (e.g. one started by dask-jobqueue on
    SLURM) instead; then :meth:`shutdown` only disconnects, the cluster stays up.
    Futures are ``distributed.Future`` objects (``result()``, ``cancel()``, ``done()``:
    the subset of :class:`concurrent.futures.Future` the callers use). Tasks are submitted
    with ``pure=False``: two equal tasks are two runs, never merged into one key.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 connect_timeout: float = 60.0) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        self._client = None
        self._pending: set = set()
        if scheduler:
            self._client = Client(scheduler, timeout=connect_timeout)
            n = len(self._client.scheduler_info().get("workers", {}))
            self.workers = workers or max(n, 1)
        else:
            self.workers = workers or os.cpu_count() or 1
            self._cluster = LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR,
                # no dashboard; its HTTP endpoint on a free port, not the shared :8787
                scheduler_kwargs={"dashboard_address": ":0"})
            try:
                self._client = Client(self._cluster, timeout=connect_timeout)
            except BaseException:
                self._cluster.close()
                raise
        self.scheduler_address = self._client.scheduler.address

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (None after :meth:`shutdown`)."""
        return self._client

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if kwargs:  # keep the task's keywords apart from Client.submit's own options
            fn = functools.partial(fn, **kwargs)
        fut = self._client.submit(fn, *args, pure=False)
        self._pending.add(fut)
        return fut

    def map(self, fn: Callable, items: Iterable[Any], timeout: float | None = None
            ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        futures = self._client.map(fn, list(items), pure=False)
        index = {fut.key: i for i, fut in enumerate(futures)}
        self._pending = set(futures)
        if not futures:
            return
        for fut in as_completed(futures, timeout=timeout):
            self._pending.discard(fut)
            yield index[fut.key], fut.result()

    def cancel(self) -> None:
        """Cancel the tasks not finished yet (a task already running on a worker runs on
        there until it returns; its result is dropped)."""
        pending = [f for f in self._pending if not f.done()]
        self._pending = set()
        if pending and self._client is not None and self._client.status == "running":
            self._client.cancel(pending)

    def terminate(self) -> None:
        """Cancel, then stop a local cluster's workers at once (running tasks die).

        A plain close asks each busy worker to finish gracefully and waits ~4 s before
        killing it; on a timeout or Ctrl-C we close the nannies with a 0.4 s grace
        instead, which kills their worker processes. A remote cluster (``scheduler=``) is never
        touched: its running tasks are cancelled and the client disconnects.
        """
        self.cancel()
        cluster = self._cluster
        if cluster is not None:
            # Closing the nanny (not just killing its worker) also stops it from
            # restarting the worker it sees die.
            for nanny in list(getattr(cluster, "workers", {}).values()):
                close = getattr(nanny, "close", None)
                if close is None:
                    continue
                # a failure here is harmless: the cluster close below still ends it
                with contextlib.suppress(Exception):
                    cluster.sync(close, timeout=0.5)
        self.shutdown()

    def shutdown(self) -> None:
        """Disconnect; a local cluster is closed and its worker processes end with it."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def make_executor(spec: str | int | None = None) -> Executor:
    """Build an executor from a short spec (CLI ``--workers`` / ``--scheduler``).

    ``None``/``'inline'``/``1`` → serial; an int N>1, ``'N'`` or ``'processes'`` → local
    process pool; ``'dask'`` → Dask LocalCluster with one worker per core, ``'dask:N'`` →
    with N workers; ``'tcp://host:port'`` (or ``tls://``) → join that Dask scheduler.
    """
    if spec in (None, "inline", "serial", 1, "1"):
        return InlineExecutor()
    if spec == "processes":
        return ProcessExecutor()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return ProcessExecutor(int(spec))
    if isinstance(spec, str):
        if spec == "dask":
            return DaskExecutor()
        if spec.startswith("dask:") and spec[5:].isdigit() and int(spec[5:]) > 0:
            return DaskExecutor(workers=int(spec[5:]))
        if spec.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            return DaskExecutor(scheduler=spec)
    raise ValueError(f"unknown executor {spec!r}: use 'inline', 'processes', a worker count, "
                     "'dask', 'dask:N' or a scheduler address tcp://host:port")
