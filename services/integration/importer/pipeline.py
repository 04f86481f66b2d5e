"""Records applied by several workers at once, results handed back in file order.

A record goes to the worker its key picks (the attendance, appointment or UBRN), so two records
about the same contact or referral are applied one after the other, in file order; records
about different ones overlap (each worker waits on its own database transaction or request).
The results come back in file order, so what the run records as done is always a whole prefix
of the file: a killed import redoes at most the records that were in flight.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: records queued per worker ahead of it
QUEUE_DEPTH = 32


class _Done(Generic[R]):
    __slots__ = ("result",)

    def __init__(self, result: R) -> None:
        self.result = result


async def in_order(
    items: Iterable[tuple[int, T]],
    apply: Callable[[T], Awaitable[R]],
    *,
    key: Callable[[T], str],
    workers: int,
) -> AsyncIterator[tuple[int, T, R]]:
    """(position, item, result) for every item, in the order of `items`; the first exception a
    worker raises is raised here (after the other workers are stopped)."""
    queues: list[asyncio.Queue[tuple[int, T] | None]] = [
        asyncio.Queue(QUEUE_DEPTH) for _ in range(max(1, workers))
    ]
    results: dict[int, tuple[T, _Done[R] | BaseException]] = {}
    changed = asyncio.Event()
    order: asyncio.Queue[int | None] = asyncio.Queue()

    async def work(queue: asyncio.Queue[tuple[int, T] | None]) -> None:
        while (job := await queue.get()) is not None:
            position, item = job
            try:
                results[position] = (item, _Done(await apply(item)))
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this worker is being stopped
                # a cancellation that leaked out of the call (an in-process app's cancel
                # scope): the record failed, and the reader says so rather than waiting
                results[position] = (item, RuntimeError(f"the call was cancelled: {exc!r}"))
            except Exception as exc:  # handed to the reader, who raises it
                results[position] = (item, exc)
            changed.set()

    async def feed() -> None:
        try:
            for position, item in items:
                await order.put(position)
                shard = zlib.crc32(key(item).encode()) % len(queues)
                await queues[shard].put((position, item))
        finally:  # the reader and the workers end even when reading the file failed
            await order.put(None)
            for q in queues:
                await q.put(None)

    tasks = [asyncio.create_task(work(q)) for q in queues]
    feeder = asyncio.create_task(feed())
    for task in (feeder, *tasks):
        task.add_done_callback(lambda _: changed.set())
    try:
        while (position := await order.get()) is not None:
            while position not in results:
                changed.clear()
                if position in results:
                    break
                broken = [t for t in tasks if t.done() and (t.cancelled() or t.exception())]
                if broken:
                    # a worker died before its records were done: never wait for it
                    failure = None if broken[0].cancelled() else broken[0].exception()
                    raise RuntimeError("a worker of the import stopped") from failure
                await changed.wait()
            item, outcome = results.pop(position)
            if isinstance(outcome, BaseException):
                raise outcome
            yield position, item, outcome.result
        await asyncio.gather(feeder, *tasks)
    finally:
        for task in (feeder, *tasks):
            task.cancel()
        await asyncio.gather(feeder, *tasks, return_exceptions=True)
