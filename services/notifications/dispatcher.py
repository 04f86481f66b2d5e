"""The notifications dispatcher process (`python -m services.notifications.dispatcher`): sends
what the consumer queued — people's messages (email, SMS, in-app) and partners' webhook
deliveries — with retries, woken by PostgreSQL NOTIFY on `waymark_dispatch` when something
new is due and polling as a fallback. Senders claim rows with a lease, so several dispatchers
can run side by side and a killed one's work is picked up when its leases run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

from shared.db import connect_kwargs
from shared.heartbeat import write_heartbeat
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)
PART = "notifications-dispatcher"


class Sender(Protocol):
    name: str

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Send what is due until `stop`; `wake` is set when new work may be due."""


async def listen_for_work(
    settings: Settings, wakes: list[asyncio.Event], stop: asyncio.Event
) -> None:
    """Set every sender's wake event on NOTIFY (and every poll interval as a fallback)."""
    conn: asyncpg.Connection | None = None

    def on_notify(*_: object) -> None:
        for w in wakes:
            w.set()

    while not stop.is_set():
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(**connect_kwargs(settings, "notifications"))
                await conn.add_listener("waymark_dispatch", on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("dispatcher: cannot LISTEN (%s); polling only", exc)
            conn = None
        try:
            await asyncio.wait_for(stop.wait(), settings.dispatcher_poll_seconds)
        except TimeoutError:
            on_notify()
    if conn is not None and not conn.is_closed():
        await conn.close()


async def beat(settings: Settings, stop: asyncio.Event) -> None:
    path = settings.run_dir / f"{PART}.alive"
    while not stop.is_set():
        write_heartbeat(path)
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except TimeoutError:
            pass


async def run_dispatcher(
    settings: Settings | None = None,
    make_senders: Callable[[Settings], Awaitable[list[Sender]]] | None = None,
) -> None:
    from shared.outbox import install_stop_signals
    from shared.telemetry import setup_telemetry

    settings = settings or get_settings()
    setup_telemetry(PART, settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    install_stop_signals(stop)
    senders = await (make_senders or default_senders)(settings)
    wakes = [asyncio.Event() for _ in senders]
    logger.info("%s sending: %s", PART, ", ".join(s.name for s in senders))
    await asyncio.gather(
        listen_for_work(settings, wakes, stop),
        beat(settings, stop),
        *(supervised(s, stop, w) for s, w in zip(senders, wakes, strict=True)),
    )


async def supervised(sender: Sender, stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Run a sender; if it ever fails, log it and start it again after a pause, so one
    sender's bug never stops the other's deliveries (their rows are leased, so nothing that
    was in hand is lost: it comes back when the lease ends)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await sender.run(stop, wake)
        except Exception:
            logger.exception("%s failed; restarting it in %.0fs", sender.name, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 60)


async def default_senders(settings: Settings) -> list[Sender]:
    from services.notifications.messages.sender import MessageSender
    from services.notifications.webhooks.sender import WebhookSender

    return [await MessageSender.create(settings), await WebhookSender.create(settings)]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO; URLs name pseudonymous patient ids: keep them out
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_dispatcher())


if __name__ == "__main__":
    main()
