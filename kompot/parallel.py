"""Where independent blocks of work run: in this process, or on a Dask cluster.

An analysis hands an executor a task function, one object every task shares
(the plan: cell states, landmarks, permutations) and one argument per task
(a block of genes). In this process the tasks run one after another; on a
``distributed.Client`` the shared plan is scattered to every worker once,
each task's argument is scattered to one worker, and the task runs there.
Either way the results come back in task order, so the assembled numbers do
not depend on where they were computed.

Within a task, passes over blocks of cells (and other independent pieces,
such as each replicate sample's fit) run in threads, one per core, each
with single-threaded BLAS (:func:`thread_map`); their results are taken in
block order, so sums over them do not depend on the number of threads.

dask and distributed are imported only when a client is used (install them
with ``pip install 'kompot[dask]'``).
"""

from __future__ import annotations

import contextvars
import os
import sys
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from ._settings import checked_client, settings

_INSTALL_HINT = "pip install 'kompot[dask]' (dask and distributed)"


def available_cores() -> int:
    """CPU cores this process may use (its affinity), for threads that each run single-threaded BLAS."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@cache
def _blas_controller() -> ThreadpoolController:
    # Created once: finding the loaded BLAS libraries costs milliseconds per call.
    return ThreadpoolController()


def single_threaded_blas():
    """A context in which BLAS and LAPACK calls run on one thread (process-wide)."""
    return _blas_controller().limit(limits=1, user_api="blas")


# Set inside the threads of thread_map, so that work nested in them runs in that thread alone.
_in_thread: contextvars.ContextVar[bool] = contextvars.ContextVar("kompot_in_thread",
                                                                   default=False)


def thread_count() -> int:
    """Threads kompot may run here at once, each with single-threaded BLAS.

    The cores this process may use, shared among the tasks a Dask worker
    runs at once; 1 inside a thread of :func:`thread_map` (its threads
    already occupy the cores).
    """
    if _in_thread.get():
        return 1
    return max(1, available_cores() // _dask_worker_threads())


def _dask_worker_threads() -> int:
    """Tasks the Dask worker running this code runs at once (1 outside a worker)."""
    if "distributed" not in sys.modules:  # never imported: not on a worker
        return 1
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def thread_map(func: Callable, items: Iterable, threads: int | None = None) -> Iterator:
    """``func(item)`` for each item, yielded in the items' order, computed in threads.

    Up to ``threads`` (default :func:`thread_count`) items are computed at
    once, each thread with single-threaded BLAS and a copy of the caller's
    context (settings held in context variables, such as the precision in
    use, carry over). At most twice as many results as threads wait to be
    taken, so memory stays bounded however many items there are. Results
    come in order, so a caller that sums them gets the same numbers as a
    loop, whatever the number of threads. With one thread it is that loop.
    """
    threads = thread_count() if threads is None else max(1, int(threads))
    if threads < 2:
        yield from map(func, items)
        return

    def run(context, item):
        return context.run(_in_this_thread, func, item)

    items = iter(items)
    with single_threaded_blas(), ThreadPoolExecutor(threads) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(run, contextvars.copy_context(), item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _in_this_thread(func: Callable, item):
    _in_thread.set(True)
    return func(item)


class SerialExecutor:
    """Runs the tasks in this process, one after another (the default)."""

    slots = 1  # tasks that run at once

    def map(self, task: Callable, shared, items: Sequence, *, progress: bool = False,
            desc: str = "blocks", threads: bool = False) -> list:
        """``[task(shared, item) for item in items]``.

        ``threads=True`` computes the tasks in threads (:func:`thread_map`),
        for tasks that run no threads of their own.
        """
        shown = progress and len(items) > 1
        results = thread_map(lambda item: task(shared, item), items, None if threads else 1)
        return list(tqdm(results, total=len(items), desc=desc, disable=not shown, leave=False))


class DaskExecutor:
    """Runs the tasks on the workers of a ``distributed.Client``.

    The shared object is scattered to all workers once (``broadcast=True``)
    rather than shipped with every task. Warnings the tasks issue on the
    workers are issued again here, each distinct one once.
    """

    def __init__(self, client):
        self.client = client

    @property
    def slots(self) -> int:
        """Tasks that run at once: the worker threads of the cluster."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, task: Callable, shared, items: Sequence, *, progress: bool = False,
            desc: str = "blocks", threads: bool = False) -> list:
        """``[task(shared, item) for item in items]``, computed on the cluster.

        ``threads`` is the in-process executor's option; the workers' own
        threads run the tasks here.
        """
        from distributed import as_completed

        client = self.client
        # Wrapped in a list so that a dict-like plan is scattered as one object.
        [shared_future] = client.scatter([shared], broadcast=True, hash=False)
        item_futures = client.scatter(list(items), hash=False)
        # Keys named after the task, so that the dashboard shows what runs.
        run = f"{getattr(task, '__name__', 'task')}-{uuid.uuid4().hex}"
        futures = [client.submit(_recording_warnings, task, shared_future, f, key=f"{run}-{i}")
                   for i, f in enumerate(item_futures)]
        if progress and len(futures) > 1:
            for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, leave=False):
                pass
        gathered = client.gather(futures)
        client.cancel([shared_future, *item_futures, *futures])
        # A worker's warnings would stay in its log: issue each distinct one
        # here, with its category and where the task issued it, so that the
        # caller's warning filters apply as they would in process.
        seen = set()
        for _, caught in gathered:
            for category, message, filename, lineno in caught:
                if (category, message) not in seen:
                    seen.add((category, message))
                    warnings.warn_explicit(message, category, filename, lineno)
        return [result for result, _ in gathered]


def _recording_warnings(task: Callable, shared, item):
    """``task(shared, item)`` and the warnings it issued: category, message, file and line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = task(shared, item)
    return result, [(w.category, str(w.message), w.filename, w.lineno) for w in caught]


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError(
            f"A Dask client was requested ({address!r}) but distributed is not installed; "
            f"{_INSTALL_HINT}, or set kompot.settings.dask_client = None."
        ) from err
    return Client(address, set_as_default=False)


@contextmanager
def executor_for(client=None) -> Iterator[SerialExecutor | DaskExecutor]:
    """The executor for ``client``, closing any client it connected itself.

    ``client``: ``None`` follows ``kompot.settings.dask_client``; ``False``
    computes in this process whatever the setting; a ``distributed.Client``
    is used as it is; a scheduler address is connected to for this run.
    """
    if client is None:
        client = settings.dask_client
    elif client is not False:
        client = checked_client(client, "client")
    if client is None or client is False:
        yield SerialExecutor()
        return
    if not isinstance(client, str):
        yield DaskExecutor(client)
        return
    connected = _connect(client)
    try:
        yield DaskExecutor(connected)
    finally:
        connected.close()


__all__ = ["DaskExecutor", "SerialExecutor", "executor_for", "thread_count", "thread_map"]
