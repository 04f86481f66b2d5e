"""Group commit: messages that arrive while a transaction commits are applied together in the
next one. A PAS waits for each ACK before it sends the next message, so a listener with many
connections would otherwise pay one commit (a WAL flush) per message; here it pays one per
batch, and each message is still acknowledged only after the commit that holds it.

Batching changes no outcome (services/integration/applying.py decides each message in order,
all or nothing). When a batch's transaction fails (the database restarting, a serialisation
failure), its messages are applied one by one, so one message's failure stays its own: that
sender gets no ACK and resends; the others are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.applying import Incoming, MessageResult
from services.integration.handlers import apply_messages
from shared.settings import Settings

logger = logging.getLogger(__name__)


class GroupCommit:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        max_batch: int = 100,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Incoming, asyncio.Future[MessageResult]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def apply(self, item: Incoming) -> MessageResult:
        """Apply `item` in the next batch; returns after that batch's commit."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        future: asyncio.Future[MessageResult] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                results = await apply_messages(
                    self.sessions, self.settings, [item for item, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - each message is tried alone below
                if len(batch) == 1:
                    _fail(batch[0][1], exc)
                    continue
                logger.warning("a batch of %d failed; applying them one by one", len(batch))
                for item, future in batch:
                    try:
                        [result] = await apply_messages(self.sessions, self.settings, [item])
                    except Exception as exc:  # noqa: BLE001 - that sender gets no ACK, resends
                        _fail(future, exc)
                    else:
                        _settle(future, result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)


def _settle(future: asyncio.Future[MessageResult], result: MessageResult) -> None:
    if not future.done():  # its connection may have gone meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[MessageResult], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
