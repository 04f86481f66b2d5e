"""The live alert stream's fan-out: one PostgreSQL LISTEN connection per API process on
`waymark_alerts` (the `alert` table's trigger NOTIFYs {alert_id, ics, version} on every
insert and update, delivered on commit), fanned out to one bounded queue per open dashboard.

- Started lazily by the first subscriber; reconnects with backoff when the connection is lost,
  and then tells every subscriber to `resync` (changes may have been missed meanwhile).
- Each notification reads the alert's row once, whatever the number of dashboards.
- A dashboard that does not keep up (its queue full) is dropped — its stream ends and the
  browser's EventSource reconnects — so one slow client never holds up the others.
- Open streams are capped per user and in all (settings `alert_stream_max_per_user`,
  `alert_stream_max_total`): one more is refused with 429 and Retry-After, and a stream's
  place is given back when it ends, however it ends (the client went away, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts import repository
from services.notifications.alerts.schemas import alert_out
from shared.db import connect_kwargs
from shared.errors import WaymarkError
from shared.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL = "waymark_alerts"
#: events a dashboard may fall behind by before it is dropped
QUEUE_SIZE = 256
#: how often an idle LISTEN connection is checked (a half-open TCP connection says nothing)
LIVENESS_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 10.0


class StreamUnavailable(WaymarkError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


class TooManyStreams(WaymarkError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


#: what a client refused a stream is asked to wait before trying again
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class AlertChanged:
    alert: dict[str, Any]  # the alert as the list renders it (JSON-ready)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: the listener was lost and is back: changes may have been missed, reload the list
RESYNC = _Marker("RESYNC")
#: this subscriber fell too far behind and is dropped: end the stream
DROPPED = _Marker("DROPPED")

Item = AlertChanged | _Marker


class Subscription:
    """One open stream: the alerts of one ICS, in a bounded queue."""

    def __init__(self, ics: str, maxsize: int, owner: str = "") -> None:
        self.ics = ics
        self.owner = owner  # the user's identity (issuer + subject), for the per-user cap
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize)
        self.dropped = False

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    def pending(self) -> int:
        """Items queued and not yet read."""
        return self._queue.qsize()

    def offer(self, item: Item) -> bool:
        """Queue an item without waiting; False (and dropped) if the client is too far behind."""
        if self.dropped:
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            while not self._queue.empty():  # what it has not read is lost anyway
                self._queue.get_nowait()
            self._queue.put_nowait(DROPPED)
            return False

    async def next(self, timeout: float | None = None) -> Item | None:
        """The next item, or None when `timeout` passes first (time for a heartbeat)."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class AlertFanout:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._listening = asyncio.Event()
        self._notes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: asyncpg.Connection | None = None
        # what happened, for operators and tests
        self.connections = 0
        self.dropped = 0
        self.refused = 0

    # --- subscribers ----------------------------------------------------------------------

    async def subscribe(
        self,
        ics: str,
        *,
        owner: str = "",
        timeout: float = 10.0,
        queue_size: int | None = None,
        max_per_user: int | None = None,
        max_total: int | None = None,
    ) -> Subscription:
        """A new subscription of user `owner`, once the LISTEN connection is up (503 if it
        can't be); 429 if the user or this process already has as many as it may (the caps
        default to the settings')."""
        per_user = max_per_user or self.settings.alert_stream_max_per_user
        total = max_total or self.settings.alert_stream_max_total
        self._check_caps(owner, per_user, total)
        self._start()
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            raise StreamUnavailable(
                "the live stream cannot listen for alert changes right now; try again shortly"
            ) from None
        self._check_caps(owner, per_user, total)  # others may have come while it waited
        sub = Subscription(ics, queue_size or self.queue_size, owner)
        self._subs.add(sub)
        return sub

    def _check_caps(self, owner: str, per_user: int, total: int) -> None:
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if sum(1 for s in self._subs if s.owner == owner) >= per_user:
            self.refused += 1
            raise TooManyStreams(
                f"you already have {per_user} live alert streams open (the "
                "most one user may); close one (another tab, say) or try "
                f"again in {RETRY_AFTER_SECONDS} s",
                headers=retry,
            )
        if len(self._subs) >= total:
            self.refused += 1
            raise TooManyStreams(
                f"this server has as many live alert streams open as it "
                f"takes ({total}); try again in {RETRY_AFTER_SECONDS} s",
                headers=retry,
            )

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _offer(self, sub: Subscription, item: Item) -> None:
        if not sub.offer(item):
            self._subs.discard(sub)
            self.dropped += 1
            logger.warning(
                "alert stream: a client of %s fell %d events behind; dropped it",
                sub.ics,
                sub.maxsize,
            )

    # --- the listener and the pump ----------------------------------------------------------

    def _start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._listen_forever(), name="alerts-listen"),
                asyncio.create_task(self._pump(), name="alerts-fanout"),
            ]

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def listener_pid(self) -> int | None:
        """The backend pid of the LISTEN connection (tests terminate it to prove recovery)."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            note = json.loads(payload)
            note["alert_id"], note["ics"], note["version"]  # noqa: B018 - shape check
        except (ValueError, TypeError, KeyError):
            logger.warning("alert stream: ignored a malformed notification")
            return
        if any(s.ics == note["ics"] for s in self._subs):
            self._notes.put_nowait(note)

    async def _listen_forever(self) -> None:
        s = self.settings
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(**connect_kwargs(s, "notifications"), timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn = conn
                self.connections += 1
                self._listening.set()
                if self.connections > 1:
                    for sub in list(self._subs):
                        self._offer(sub, RESYNC)
                delay = 0.5
                while not lost.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), LIVENESS_SECONDS)
                    except TimeoutError:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 10)
                logger.warning("alert stream: the LISTEN connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, a timeout: try again with backoff
                logger.warning(
                    "alert stream: cannot LISTEN on %s (%s: %s); retrying in %.1fs",
                    CHANNEL,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            finally:
                self._listening.clear()
                self._conn = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _pump(self) -> None:
        while True:
            note = await self._notes.get()
            try:
                await self._deliver(note)
            except asyncio.CancelledError:
                raise
            except Exception:
                # the change could not be read: its subscribers reload instead of missing it
                logger.exception("alert stream: could not read alert %s", note.get("alert_id"))
                for sub in list(self._subs):
                    if sub.ics == note["ics"]:
                        self._offer(sub, RESYNC)

    async def _deliver(self, note: dict[str, Any]) -> None:
        if not any(s.ics == note["ics"] for s in self._subs):
            return
        async with self.sessions() as session:
            row = await repository.get_alert(session, str(note["alert_id"]))
        # a newer version's own notification follows (NOTIFY is sent on commit): send that one
        if row is None or row.version != note["version"]:
            return
        item = AlertChanged(alert_out(row).model_dump(mode="json"))
        for sub in list(self._subs):
            if sub.ics == row.ics:
                self._offer(sub, item)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._subs.clear()
