"""An ordered, bounded parallel map over worker processes, for CPU-bound text work (pre-token counts,
encoding).

`ordered_map(fn, items, workers, make_context)` yields `fn(context, item)` for each item, in input order. The
context (a tokenizer, a compiled regex) is built once per worker by `make_context`, which must be picklable (a
module-level function or a `functools.partial` of one); with `workers <= 1` everything runs in this process,
which is what tests use and what makes results easy to compare: the output never depends on `workers`.

At most `max_inflight` items are submitted ahead of the consumer, so memory stays bounded however large the
input stream is (`multiprocessing.Pool.imap` would read the whole input ahead). Workers come from a fork
server where the platform has one, else they are spawned: forking this process directly is unsafe once it runs
threads (PyTorch's, tiktoken's), and spawning re-imports the main module (PyTorch included) in every worker,
while the fork server imports it once per process and forks each worker from that clean state.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Set once in each worker process by `_init_worker`; never read in the parent process.
_WORKER_CONTEXT: Any = None


def default_workers() -> int:
    """Worker processes for CPU-bound text work: every core, at most 8."""
    return max(1, min(multiprocessing.cpu_count() or 1, 8))


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker(make_context: Callable[[], Any]) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = make_context()


def _call_in_worker(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_WORKER_CONTEXT, item)


def ordered_map(
    fn: Callable[[Any, Item], Result],
    items: Iterable[Item],
    workers: int,
    make_context: Callable[[], Any],
    max_inflight: int | None = None,
) -> Iterator[Result]:
    """`fn(context, item)` for each item, in order, on `workers` processes with bounded read-ahead."""
    if workers <= 1:
        context = make_context()
        for item in items:
            yield fn(context, item)
        return
    limit = max_inflight or 2 * workers
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(_start_method()),
        initializer=_init_worker,
        initargs=(make_context,),
    )
    pending: deque[Future[Result]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(_call_in_worker, fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
