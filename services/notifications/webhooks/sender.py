"""Sends partner webhook deliveries (run by the dispatcher, `dispatcher.py`).

A continuous pool, not batch-and-wait: whenever a slot is free the sender claims more due
deliveries, so one slow or failing partner never holds up the others. Each claim takes at
most `webhook_max_in_flight_per_subscription` deliveries of one subscription (counting those
in flight anywhere) and `webhook_concurrency` in all. Each partner has its own small
connection pool, so a partner's slow connections never take another's.

A claim is a lease (`lease_until`) taken by an UPDATE that re-checks the lease is free, so two
dispatchers never both send a row; a killed dispatcher's rows come back when the lease ends.
Each attempt is recorded in `webhook_attempt`; results are written in small batches (one
transaction per batch: the attempts, the deliveries' new state, the subscriptions'
`failing_since`, and any disabling with its inbox message and audit entry commit together).

Recording is pipelined: a slot frees as soon as its POST is answered, while the row keeps
its lease until the result is durable, so no other claim can take it meanwhile. The claim
does not count this sender's answered-but-unrecorded rows as in flight to their partner (no
request to the partner is open), and at most `webhook_concurrency` results wait to be
recorded: past that the sender claims nothing until the recorder catches up.

Delivery is at least once: if a result cannot be recorded (or the process dies first), the
lease runs out and the delivery is sent again with the same `webhook-id`, which receivers
deduplicate on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import certifi
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.messages import repository as messages
from services.notifications.webhooks import domain, repository
from services.notifications.webhooks.endpoints import Resolver, guard_endpoint
from shared.audit import record_audit
from shared.auth import Principal, Role
from shared.db import make_engine, make_sessionmaker
from shared.errors import ValidationFailed
from shared.events.binding import HTTP_CONTENT_TYPE
from shared.settings import Settings

logger = logging.getLogger(__name__)

USER_AGENT = "Waymark-Webhooks/1.0"
RECORD_BATCH = 200
#: the recorder waits this long after a first result for others to join its transaction. A
#: slot does not wait for the recording (only the row's lease does), so this costs no
#: throughput, and at a few hundred deliveries a second it makes batches of dozens instead of
#: a few: each transaction (checkout, ping, BEGIN, statement, COMMIT) costs ~1-3 ms of this
#: process's CPU, which the bench profile showed competing with the POSTs themselves
RECORD_LINGER_SECONDS = 0.05
#: a partner's connections are closed after this long without a delivery
IDLE_CLIENT_SECONDS = 60.0
#: how much of a receiver's answer is kept in the delivery log, and read at most
EXCERPT_BYTES = 512
READ_BYTES = 64 * 1024

# --- what a claim and an attempt carry -----------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: str
    subscription_id: str
    org: str
    url: str
    payload: dict[str, Any]
    attempts: int
    retry_from: int
    lease_until: datetime
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None


@dataclass(frozen=True)
class Result:
    delivery: Claimed
    at: datetime
    status: str  # delivered | pending (retry after `delay`) | failed
    delay: float | None
    status_code: int | None
    error: str | None
    duration_ms: int


def _clean(value: str, limit: int = 300) -> str:
    """Text fit for the delivery log: printable, no NUL, bounded."""
    return "".join(ch if ch.isprintable() else " " for ch in value)[:limit].strip()


SYSTEM = Principal(
    user="system:notifications-dispatcher", roles=frozenset({Role.SERVICE}), org="WAYMARK", ics=""
)


async def disable_failing(
    session: AsyncSession, *, window_seconds: float, subscription_ids: Iterable[str] | None = None
) -> list[str]:
    """Disable every active subscription failing with no success for the window, and tell
    its owner (an inbox message to the organisation's team) — in the caller's transaction."""
    ids = None if subscription_ids is None else sorted(set(subscription_ids))
    if ids == []:
        return []
    rows = await repository.disable_failing(
        session, window_seconds=window_seconds, subscription_ids=ids
    )
    for row in rows:
        subject, body = domain.disabled_notice(
            subscription_id=row.id,
            url=row.url,
            failing_since=row.failing_since,
            last_error=await repository.last_error(session, row.id),
        )
        await messages.add_inbox_item(
            session,
            item_id=f"inb_{uuid.uuid4().hex}",
            owner=f"org:{row.org}",
            org=row.org,
            subject=subject,
            body=body,
        )
        record_audit(
            session,
            principal=SYSTEM,
            action="disable",
            resource_type="WebhookSubscription",
            resource_id=row.id,
            detail=row.disabled_reason,
        )
        logger.warning(
            "webhook subscription %s of %s disabled: %s", row.id, row.org, row.disabled_reason
        )
    return [r.id for r in rows]


class WebhookSender:
    name = "webhook_sender"

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine | None = None,
        resolve: Resolver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engine = engine
        self.resolve = resolve
        self.rng = rng or random.Random()
        self.lease_seconds = settings.webhook_timeout_seconds * 2 + 10
        self.in_flight: set[asyncio.Task[None]] = set()
        # one HTTP client (connection pool) per partner, sized to its share: one pool shared
        # by many concurrent requests slows down sharply (httpcore's pool bookkeeping), and a
        # partner's slow connections never take another's
        self._clients: dict[str, _PartnerClient] = {}
        self._results: asyncio.Queue[Result] = asyncio.Queue()
        # ids of this sender's deliveries answered but not yet recorded (their leases hold)
        self._unrecorded: set[str] = set()
        self._slot_freed = asyncio.Event()

    @classmethod
    async def create(cls, settings: Settings) -> WebhookSender:
        engine = make_engine(settings, "notifications", pool_size=4)
        return cls(settings, sessions=make_sessionmaker(engine), engine=engine)

    async def close(self) -> None:
        await self._close_clients(idle_for=None)
        if self.engine is not None:
            await self.engine.dispose()  # the engine can still be used: it reconnects

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Send what is due until `stop`; `wake` is set when new work may be due (NOTIFY).
        May be called again after it returns or fails (the dispatcher restarts it)."""
        self._results = asyncio.Queue()
        # a previous run's unrecorded rows count as in flight again until their leases end
        self._unrecorded = set()
        recorder = asyncio.create_task(self._record_loop())
        poll = self.settings.dispatcher_poll_seconds
        last_sweep = 0.0
        try:
            while not stop.is_set():
                wake.clear()
                self._slot_freed.clear()
                timeout = poll
                try:
                    if time.monotonic() - last_sweep >= poll:
                        last_sweep = time.monotonic()
                        await self.sweep()
                        await self._close_clients(idle_for=IDLE_CLIENT_SECONDS)
                    free = self._free_slots()
                    claimed = await self.claim(free) if free > 0 else []
                    for d in claimed:
                        self._start(d)
                    if free > 0 and len(claimed) == free:
                        continue  # more may be due right now
                    if not claimed and free > 0:
                        due_in = await self.next_due_in()
                        if due_in is not None and due_in > 0:
                            timeout = min(poll, due_in)
                except Exception:  # noqa: BLE001 - the database may be away: log, wait, retry
                    logger.exception("webhook sender: claiming failed; retrying")
                await _first_of(stop, wake, self._slot_freed, timeout=max(timeout, 0.01))
        finally:
            if self.in_flight:
                await asyncio.wait(
                    self.in_flight, timeout=self.settings.webhook_timeout_seconds + 2
                )
            for t in self.in_flight:
                t.cancel()
            # what was answered is recorded before stopping (else its lease runs out and it
            # is sent again)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                    await self._results.join()
            recorder.cancel()
            await self.close()

    def _free_slots(self) -> int:
        """Requests this sender may start now: free slots, while the results waiting to be
        recorded are fewer than the slots (the recorder's backlog holds claims back)."""
        c = self.settings.webhook_concurrency
        return min(c - len(self.in_flight), c - len(self._unrecorded))

    def _client(self, subscription_id: str) -> _PartnerClient:
        pc = self._clients.get(subscription_id)
        if pc is None:
            pc = self._clients[subscription_id] = _PartnerClient(
                make_client(self.settings, self.settings.webhook_max_in_flight_per_subscription)
            )
        pc.last_used = time.monotonic()
        return pc

    async def _close_clients(self, *, idle_for: float | None) -> None:
        now = time.monotonic()
        for sid, pc in list(self._clients.items()):
            if idle_for is None or (pc.busy == 0 and now - pc.last_used > idle_for):
                del self._clients[sid]
                await pc.client.aclose()

    def _start(self, d: Claimed) -> None:
        task = asyncio.create_task(self._deliver(d))
        self.in_flight.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.in_flight.discard(t)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def claim(self, free: int) -> list[Claimed]:
        async with self.sessions() as session, session.begin():
            rows = await repository.claim(
                session,
                per_sub=max(1, self.settings.webhook_max_in_flight_per_subscription),
                free=free,
                lease=float(self.lease_seconds),
                answered=sorted(self._unrecorded),
            )
        return [
            Claimed(
                id=r.id,
                subscription_id=r.subscription_id,
                org=r.org,
                url=r.url,
                payload=r.payload if isinstance(r.payload, dict) else json.loads(r.payload),
                attempts=r.attempts,
                retry_from=r.retry_from,
                lease_until=r.lease_until,
                secret=r.secret,
                previous_secret=r.previous_secret,
                previous_secret_until=r.previous_secret_until,
            )
            for r in rows
        ]

    async def next_due_in(self) -> float | None:
        async with self.sessions() as session:
            return await repository.next_due_in(session)

    async def sweep(self) -> list[str]:
        """Disable subscriptions that have failed for the whole window (also those whose
        last delivery ran out of retries just before the window closed)."""
        async with self.sessions() as session, session.begin():
            return await disable_failing(
                session, window_seconds=self.settings.webhook_disable_after_seconds
            )

    # --- one attempt ------------------------------------------------------------------------

    async def _deliver(self, d: Claimed) -> None:
        try:
            result = await self.attempt(d)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the pool; logged
            logger.exception("webhook delivery %s: attempt failed unexpectedly", d.id)
            result = self._result(d, datetime.now(UTC), None, _clean(f"internal: {exc}"), 0)
        # the slot frees now; the row keeps its lease until the recorder has written this
        self._unrecorded.add(d.id)
        self._results.put_nowait(result)

    async def attempt(self, d: Claimed) -> Result:
        """POST the delivery once: the CloudEvent JSON, signed exactly as sent."""
        s = self.settings
        body = json.dumps(d.payload, separators=(",", ":"), ensure_ascii=False).encode()
        now = datetime.now(UTC)
        headers = {
            # the CloudEvents HTTP binding's structured mode (the body is the whole event)
            "content-type": HTTP_CONTENT_TYPE,
            **domain.sign_headers(
                msg_id=d.id,
                timestamp=int(now.timestamp()),
                body=body,
                secrets=domain.signing_secrets(
                    secret=d.secret,
                    previous_secret=d.previous_secret,
                    previous_secret_until=d.previous_secret_until,
                    now=now,
                ),
            ),
        }
        t0 = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            target, extensions = d.url, {}
            if s.deployment_mode == "production":
                # the name is resolved and checked again now, and the request goes to the
                # checked address, so DNS cannot point it at an internal one after creation
                endpoint, addresses = await guard_endpoint(
                    d.url, mode="production", resolve=self.resolve
                )
                target, host_header, extensions = domain.pinned_url(endpoint, addresses[0])
                headers.update(host_header)
            async with asyncio.timeout(s.webhook_timeout_seconds):
                pc = self._client(d.subscription_id)
                pc.busy += 1
                try:
                    async with pc.client.stream(
                        "POST", target, content=body, headers=headers, extensions=extensions
                    ) as resp:
                        code = resp.status_code
                        # read the (small) answer so the connection can be reused
                        answer = await _read_some(resp)
                        if not 200 <= code < 300:
                            excerpt = _clean(answer[:EXCERPT_BYTES].decode("utf-8", "replace"), 200)
                            error = f"HTTP {code}" + (f": {excerpt}" if excerpt else "")
                finally:
                    pc.busy -= 1
        except ValidationFailed as exc:
            error = _clean(f"refused: {exc.message}")
        except TimeoutError:
            error = f"timed out after {s.webhook_timeout_seconds:g} s"
        except httpx.TimeoutException:
            error = f"timed out after {s.webhook_timeout_seconds:g} s"
        except (httpx.HTTPError, OSError) as exc:
            error = _clean(f"{type(exc).__name__}: {exc}")
        duration_ms = int((time.perf_counter() - t0) * 1000)
        return self._result(d, now, code, error, duration_ms)

    def _result(
        self, d: Claimed, at: datetime, code: int | None, error: str | None, duration_ms: int
    ) -> Result:
        if code is not None and 200 <= code < 300:
            return Result(d, at, "delivered", None, code, None, duration_ms)
        failures = d.attempts + 1 - d.retry_from
        delay = domain.retry_delay(max(failures, 1), self.settings.webhook_retry_seconds, self.rng)
        return Result(
            d,
            at,
            "pending" if delay is not None else "failed",
            delay,
            code,
            error or "failed",
            duration_ms,
        )

    # --- recording, in batches ---------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._results.get()]
            if self._results.qsize() < RECORD_BATCH:
                await asyncio.sleep(RECORD_LINGER_SECONDS)
            while len(batch) < RECORD_BATCH and not self._results.empty():
                batch.append(self._results.get_nowait())
            for attempt in range(3):
                try:
                    await self.record(batch)
                    break
                except Exception:  # noqa: BLE001 - leases run out and the rows are re-sent
                    logger.exception(
                        "webhook sender: recording %d results failed (try %d)",
                        len(batch),
                        attempt + 1,
                    )
                    await asyncio.sleep(0.5 * (attempt + 1))
            # recorded, or left to their leases (they count as in flight until these end)
            self._unrecorded.difference_update(r.delivery.id for r in batch)
            for _ in batch:
                self._results.task_done()
            self._slot_freed.set()

    async def record(self, results: list[Result]) -> None:
        """Write attempts and their outcomes in one transaction. A result whose lease has
        been lost (taken over after expiry) is dropped: the new holder records its own."""
        async with self.sessions() as session, session.begin():
            rows = await repository.record_results(
                session,
                ids=[r.delivery.id for r in results],
                leases=[r.delivery.lease_until for r in results],
                statuses=[r.status for r in results],
                delays=[r.delay for r in results],
                codes=[r.status_code for r in results],
                errors=[r.error for r in results],
                durations=[r.duration_ms for r in results],
                ats=[r.at for r in results],
            )
            # record_results has cleared failing_since of the subscriptions delivered to
            delivered = {r.subscription_id for r in rows if r.status == "delivered"}
            failed = {r.subscription_id for r in rows if r.status != "delivered"} - delivered
            if failed:
                await repository.mark_failing(session, sorted(failed))
                await disable_failing(
                    session,
                    window_seconds=self.settings.webhook_disable_after_seconds,
                    subscription_ids=failed,
                )
        if len(rows) < len(results):
            logger.warning(
                "webhook sender: %d results had lost their lease", len(results) - len(rows)
            )


@dataclass
class _PartnerClient:
    client: httpx.AsyncClient
    busy: int = 0
    last_used: float = 0.0


@functools.cache
def _tls() -> ssl.SSLContext:
    # loading the CA bundle takes ~20 ms: once per process, not per partner
    return ssl.create_default_context(cafile=certifi.where())


def make_client(settings: Settings, connections: int) -> httpx.AsyncClient:
    n = max(connections, 1)
    return httpx.AsyncClient(
        verify=_tls(),
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        # no proxies or netrc from the environment: where a request goes is decided here
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


async def _read_some(resp: httpx.Response) -> bytes:
    """Up to READ_BYTES of the answer; a longer one is cut off (and its connection closed)."""
    data = b""
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) >= READ_BYTES:
            break
    return data


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
