"""The worker processes of the corpus writer: each holds a :class:`~hisyngen.corpus.SampleWriter`.

Spawned, never forked, and watching their parent; a dead worker becomes a one-line error
(:data:`WORKER_DIED`) and the finished chunks are kept for a rerun to resume.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from hisyngen.errors import HisynError

if TYPE_CHECKING:
    from hisyngen.corpus import SampleWriter

_WORKER: SampleWriter | None = None


def init_worker_process() -> None:
    """Settings of a generation worker process: parallelism comes from the processes themselves.

    A worker also exits when its parent dies: after a ``kill -9`` of the command, orphans would
    live on (and could still be writing into the folder a rerun resumes).
    """
    import threading

    import cv2

    cv2.setNumThreads(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(*args: Any) -> None:
    from hisyngen.corpus import SampleWriter  # here: hisyngen.corpus imports this module

    global _WORKER
    init_worker_process()
    _WORKER = SampleWriter(*args)


def _worker_write_chunk(chunk: tuple[int, int]) -> int:
    assert _WORKER is not None
    return _WORKER.write_chunk(chunk)


def _worker_candidates(batch: tuple[int, int]) -> list[tuple[Any, dict[str, Any]]]:
    assert _WORKER is not None
    return _WORKER.candidates(batch)


WORKER_DIED = ("a worker process died (killed, or out of memory); the finished work is kept: "
               "rerun the same command to resume")


def _writer_pool(workers: int, writer_args: tuple) -> Any:
    """``workers`` spawned processes, each holding a SampleWriter(*writer_args)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: safe with torch/OpenMP already initialised in the parent (fork is not), same on every OS.
    # ProcessPoolExecutor, unlike multiprocessing.Pool, reports a dead worker instead of hanging.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=writer_args)


class CandidateStream:
    """Batches of generated (image, row) candidates of a stream, in index order: produced ahead of
    the consumer by ``workers`` processes (at most ``prefetch`` batches in flight), or in-process
    when ``workers`` is 0. ``batches`` yields one list per (start, stop) range."""

    def __init__(self, writer_args: tuple, workers: int, prefetch: int) -> None:
        from hisyngen.corpus import SampleWriter  # here: hisyngen.corpus imports this module

        self.prefetch = max(1, prefetch)
        self.local = SampleWriter(*writer_args) if workers <= 0 else None
        self.pool = _writer_pool(workers, writer_args) if workers > 0 else None

    def batches(self, ranges: Iterator[tuple[int, int]]) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
        from collections import deque
        from concurrent.futures.process import BrokenProcessPool

        if self.local is not None:
            for batch in ranges:
                yield self.local.candidates(batch)
            return
        pending: deque = deque()
        ranges = iter(ranges)
        while True:
            while len(pending) < self.prefetch:
                batch = next(ranges, None)
                if batch is None:
                    break
                pending.append(self.pool.submit(_worker_candidates, batch))
            if not pending:
                return
            try:
                yield pending.popleft().result()
            except BrokenProcessPool:
                raise HisynError(WORKER_DIED) from None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def run_chunks(
    chunks: list[tuple[int, int]],
    writer_args: tuple,
    workers: int,
    on_done: Callable[[int], None],
) -> None:
    """Write ``chunks`` in-process (1 worker) or in a spawned process pool; ``on_done(n)`` per chunk."""
    if workers <= 1 or len(chunks) <= 1:
        from hisyngen.corpus import SampleWriter  # here: hisyngen.corpus imports this module

        writer = SampleWriter(*writer_args)
        for chunk in chunks:
            on_done(writer.write_chunk(chunk))
        return
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = _writer_pool(min(workers, len(chunks)), writer_args)
    try:
        futures = [pool.submit(_worker_write_chunk, chunk) for chunk in chunks]
        for future in as_completed(futures):
            on_done(future.result())
    except BrokenProcessPool:
        raise HisynError(WORKER_DIED) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
