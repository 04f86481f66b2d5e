"""Sends people's messages: the referrer's, the receiving team's, the person's and their
carers', by email, SMS or the in-app inbox, in the form each can use.

For each message that is due the sender
1. claims it with a lease (an UPDATE that only succeeds while no one else holds the message),
   so a second dispatcher never works on it at the same time and a killed one's messages come
   back when the lease runs out; the lease is renewed before every email or text, and a
   sender that lost it stops before sending;
2. fetches the personal details from the owning services' APIs with its own credential
   (contacts.py) and works out the recipients, their channel and form (recipients.py,
   domain.py);
3. for each recipient not yet reached, renders the template (templates.py) and sends it,
   writing one delivery-log row per attempt; a recipient is sent at most once (the unique
   index `ux_message_delivery_sent`, and the in-app item in the same transaction as its row);
4. sets the message's status: sent, partly_sent, failed, held (quiet hours) or pending
   (a retry is due later). Transient failures are retried on `message_retry_seconds`, then
   fail; permanent ones (a missing template variable, no reachable channel, a 4xx from the
   SMS provider) fail at once, visibly. One bad message never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts.recipients import alert_recipients
from services.notifications.audience import ALERT_AUDIENCES, alert_waits_for_quiet_hours
from services.notifications.config import duty_rota
from services.notifications.messages import domain as rules
from services.notifications.messages import repository
from services.notifications.messages.channels import (
    EmailChannel,
    InAppChannel,
    PermanentFailure,
    SmsChannel,
    TransientFailure,
)
from services.notifications.messages.contacts import (
    Contacts,
    DetailsGone,
    DetailsUnavailable,
    ReferralDetails,
    ServiceDetails,
)
from services.notifications.messages.delivery_log import DeliveryLog, Past, history, log_ref
from services.notifications.messages.domain import (
    Channel,
    Outcome,
    RecipientOutcome,
    Route,
    StaffPreference,
)
from services.notifications.messages.recipients import (
    Recipient,
    alert_recipient,
    referral_recipients,
    staff_preference,
)
from services.notifications.messages.templates import Rendered, TemplateFailure, Templates
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.settings import Settings

logger = logging.getLogger(__name__)

#: how long a claimed message is this sender's; renewed before each email or text
LEASE_SECONDS = 120.0
BATCH = 20
CONCURRENCY = 8
#: the delivery log's channel for a failure that no channel was tried for
NO_CHANNEL = "none"


class LeaseLost(Exception):
    """Another sender holds the message now (ours ran out): stop without sending."""


@dataclass
class Claimed:
    id: str
    event_id: str
    event_type: str
    audience: str
    template: str
    patient_id: str | None
    referral_id: str | None
    org: str | None
    context: dict[str, Any]
    attempts: int
    lease: datetime  # the lease we hold; its exact value is our token


class MessageSender:
    name = "message_sender"

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        templates: Templates | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.http = http
        self.templates = templates or Templates()
        self.contacts = Contacts(settings, http)
        self.email = EmailChannel(settings)
        self.sms = SmsChannel(settings, http)
        self.in_app = InAppChannel()
        self.rota = duty_rota(settings)  # fail fast: escalations must reach someone

    @classmethod
    async def create(cls, settings: Settings) -> MessageSender:
        engine = make_engine(settings, "notifications", pool_size=4)
        return cls(settings, engine, make_sessionmaker(engine), httpx.AsyncClient())

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    claimed = await self.send_due()
                except Exception:  # noqa: BLE001 - e.g. the database restarting: carry on
                    logger.exception("message sender: a round failed; trying again")
                    claimed = 0
                if claimed >= BATCH:
                    continue
                await _first(stop, wake, self.settings.dispatcher_poll_seconds * 2)
        finally:
            await self.close()

    async def send_due(self, limit: int = BATCH) -> int:
        """Claim what is due and send it; how many messages were claimed."""
        batch = await self.claim(limit)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(m: Claimed) -> None:
            async with gate:
                await self.process(m)

        await asyncio.gather(*(one(m) for m in batch))
        return len(batch)

    async def claim(self, limit: int) -> list[Claimed]:
        async with unit_of_work(self.sessions) as session:
            rows = await repository.claim(session, limit=limit, lease_seconds=LEASE_SECONDS)
        return [
            Claimed(
                id=r.id,
                event_id=r.event_id,
                event_type=r.event_type,
                audience=r.audience,
                template=r.template,
                patient_id=r.patient_id,
                referral_id=r.referral_id,
                org=r.org,
                context=dict(r.context or {}),
                attempts=r.attempts,
                lease=r.lease_until,
            )
            for r in rows
        ]

    # --- one message ----------------------------------------------------------------------------

    async def process(self, m: Claimed) -> None:
        """Send one claimed message; never raises (a bug fails this message, not the loop)."""
        try:
            await self._process(m)
        except LeaseLost:
            logger.warning("message %s: lease lost to another sender; left to it", m.id)
        except Exception as exc:  # noqa: BLE001 - a bug: retried, then failed visibly
            logger.exception("message %s: unexpected error", m.id)
            try:
                await self._message_level_failure(
                    m, f"internal error: {type(exc).__name__}: {exc}"[:500]
                )
            except Exception:  # noqa: BLE001 - the lease runs out and it comes back
                logger.exception("message %s: could not record the failure", m.id)

    async def _process(self, m: Claimed) -> None:
        withheld = rules.withheld(m.template, m.context)
        if withheld:
            await self._finish(m, "skipped", error=withheld)
            return
        if m.audience in ALERT_AUDIENCES:
            await self._process_alert(m)
            return
        if not m.referral_id:
            await self._finish(
                m,
                "failed",
                error="the message names no referral, so no details can be fetched for it",
            )
            return
        try:
            referral = await self.contacts.referral(m.referral_id, m.event_id)
            service, service_problem = await self._service(referral.to_service_id)
            recipients, nobody = await referral_recipients(
                m.audience,
                referral,
                service,
                service_problem,
                contacts=self.contacts,
                preference=self._preference,
            )
        except DetailsGone as exc:
            await self._finish(m, "failed", error=str(exc))
            return
        except DetailsUnavailable as exc:
            await self._message_level_failure(m, f"details could not be fetched: {exc}")
            return
        if nobody:
            await self._finish(m, "skipped", error=nobody)
            return
        past = await self._history(m.id)
        outcomes = []
        for r in recipients:
            outcomes.append(await self._deliver(m, r, referral, service, past.get(r.key, Past())))
        status = rules.message_status(outcomes)
        await self._finish(
            m,
            status.status,
            next_at=status.next_attempt_at,
            error="; ".join(status.errors)[:2000] or None,
        )

    async def _process_alert(self, m: Claimed) -> None:
        """An alert's message to its addressed organisations or the duty rota: no referral
        to fetch, the recipients from the message itself, the staff's own preferences and the
        rota's configuration."""
        found, nobody = await alert_recipients(
            audience=m.audience,
            context=m.context,
            patient_id=m.patient_id,
            settings=self.settings,
            rota=self.rota,
            email_preferences=self._email_preferences,
        )
        if nobody:
            await self._finish(m, "skipped", error=nobody)
            return
        waits = alert_waits_for_quiet_hours(m.context)
        recipients = [alert_recipient(a, audience=m.audience, waits=waits) for a in found]
        past = await self._history(m.id)
        outcomes = [
            await self._deliver(m, r, None, None, past.get(r.key, Past())) for r in recipients
        ]
        status = rules.message_status(outcomes)
        await self._finish(
            m,
            status.status,
            next_at=status.next_attempt_at,
            error="; ".join(status.errors)[:2000] or None,
        )

    async def _email_preferences(self, org: str) -> list[tuple[str, StaffPreference]]:
        """The staff of `org` who chose email in their own preferences (by preference key)."""
        async with self.sessions() as session:
            rows = await repository.email_preferences(session, org)
        return [(r.user_id, staff_preference(r)) for r in rows]

    async def _service(self, service_id: str) -> tuple[ServiceDetails | None, str | None]:
        try:
            return await self.contacts.service(service_id), None
        except DetailsUnavailable as exc:
            return None, str(exc)

    async def _preference(self, user: str) -> StaffPreference:
        async with self.sessions() as session:
            row = await repository.staff_preference(session, user)
        if row is None:
            return rules.DEFAULT_STAFF_PREFERENCE
        return staff_preference(row)

    async def _history(self, message_id: str) -> dict[str, Past]:
        async with self.sessions() as session:
            return history(await repository.delivery_history(session, message_id))

    # --- one recipient ----------------------------------------------------------------------------

    async def _deliver(
        self,
        m: Claimed,
        r: Recipient,
        referral: ReferralDetails | None,
        service: ServiceDetails | None,
        past: Past,
    ) -> RecipientOutcome:
        if past.sent:
            return RecipientOutcome(r.key, Outcome.SENT)
        # failed for good: nothing could be tried for it (no channel, the template)
        if NO_CHANNEL in past.failed_channels:
            return RecipientOutcome(r.key, Outcome.FAILED, error=past.last_error)
        attempt = past.rows + 1
        log = DeliveryLog(self.sessions, m.id, r, attempt)
        if r.unavailable:
            return await self._transient(log, past, NO_CHANNEL, r.unavailable)
        if not r.reach.reachable:
            await log.write(NO_CHANNEL, "failed", error=r.reach.reason)
            return RecipientOutcome(r.key, Outcome.FAILED, error=r.reach.reason)
        routes = [x for x in r.reach.routes if x.channel.value not in past.failed_channels]
        if not routes:
            return RecipientOutcome(r.key, Outcome.FAILED, error=past.last_error)
        now = datetime.now(UTC)
        held_until = rules.quiet_until(
            now, r.quiet[0], r.quiet[1], self.settings.quiet_hours_timezone
        )
        try:
            rendered = self.templates.render(
                m.template,
                variant=r.variant,
                language=r.language,
                large_type=r.large_type,
                values=rules.template_values(
                    context=m.context,
                    referral=referral.template_values() if referral else {},
                    service_name=service.name if service else None,
                    zone=self.settings.quiet_hours_timezone,
                    extra=r.extra,
                ),
            )
        except TemplateFailure as exc:
            await log.write(NO_CHANNEL, "failed", error=str(exc))
            return RecipientOutcome(r.key, Outcome.FAILED, error=str(exc))
        log.rendered = rendered
        last_error = None
        for route in routes:
            if rules.is_held(route.channel, held_until):
                assert held_until is not None
                local = held_until.astimezone(ZoneInfo(self.settings.quiet_hours_timezone))
                await log.write(
                    route.channel.value,
                    "held",
                    note=f"quiet hours until {local:%H:%M} ({self.settings.quiet_hours_timezone})",
                )
                return RecipientOutcome(r.key, Outcome.HELD, next_at=held_until)
            try:
                ref = await self._send(m, r, route, rendered, log)
            except PermanentFailure as exc:
                last_error = str(exc)
                await log.write(route.channel.value, "failed", error=last_error)
                continue  # the recipient's next channel, if they have one
            except TransientFailure as exc:
                outcome = await self._transient(log, past, route.channel.value, str(exc))
                if outcome.outcome is Outcome.RETRYING:
                    return outcome
                last_error = outcome.error
                continue  # retries spent on this channel: the next one, if any
            if ref is not _ALREADY_SENT:
                logger.info(
                    "message %s sent to %s by %s", m.id, log_ref(r.key), route.channel.value
                )
            return RecipientOutcome(r.key, Outcome.SENT)
        return RecipientOutcome(r.key, Outcome.FAILED, error=last_error)

    async def _transient(
        self, log: DeliveryLog, past: Past, channel: str, error: str
    ) -> RecipientOutcome:
        failures = past.retrying + 1
        delay = rules.retry_delay(failures, self.settings.message_retry_seconds)
        if delay is None:
            # final on this channel (a `failed` row: `_deliver` never tries it again)
            final = f"gave up after {failures} attempts: {error}"
            await log.write(channel, "failed", error=final)
            return RecipientOutcome(log.recipient.key, Outcome.FAILED, error=final)
        await log.write(channel, "retrying", error=error)
        return RecipientOutcome(
            log.recipient.key,
            Outcome.RETRYING,
            next_at=datetime.now(UTC) + timedelta(seconds=delay),
            error=error,
        )

    async def _send(
        self, m: Claimed, r: Recipient, route: Route, rendered: Rendered, log: DeliveryLog
    ) -> object:
        """Send on one channel and log it as sent; raises Permanent/TransientFailure."""
        delivery_id = f"dlv_{uuid.uuid4().hex}"
        if route.channel is Channel.IN_APP:
            assert r.inbox_owner and r.inbox_org
            async with unit_of_work(self.sessions) as session:
                item = await self.in_app.send(
                    session,
                    owner=r.inbox_owner,
                    org=r.inbox_org,
                    message_id=m.id,
                    subject=rendered.subject,
                    body=rendered.text,
                    variant=rendered.variant,
                )
                stored = await log.insert(
                    session, delivery_id, route.channel.value, "sent", provider_ref=item
                )
            return item if stored else _ALREADY_SENT
        await self._renew(m)  # never send on a lease someone else may hold now
        assert route.address is not None
        if route.channel is Channel.EMAIL:
            ref = await self.email.send(
                to=route.address,
                subject=rendered.subject,
                body=rendered.text,
                html=rendered.html,
                reference=delivery_id,
                language=rendered.language,
            )
        else:
            ref = await self.sms.send(to=route.address, body=rendered.sms, reference=delivery_id)
        await log.write(route.channel.value, "sent", provider_ref=ref, delivery_id=delivery_id)
        return ref

    # --- the message's row --------------------------------------------------------------------

    async def _renew(self, m: Claimed) -> None:
        async with unit_of_work(self.sessions) as session:
            lease = await repository.renew_lease(
                session, m.id, token=m.lease, lease_seconds=LEASE_SECONDS
            )
        if lease is None:
            raise LeaseLost(m.id)
        m.lease = lease

    async def _message_level_failure(self, m: Claimed, error: str) -> None:
        """Nothing could be tried for any recipient (e.g. the referrals API is down)."""
        failures = m.attempts + 1
        delay = rules.retry_delay(failures, self.settings.message_retry_seconds)
        if delay is None:
            await self._finish(m, "failed", error=f"gave up after {failures} attempts: {error}")
        else:
            await self._finish(
                m, "pending", error=error, next_at=datetime.now(UTC) + timedelta(seconds=delay)
            )

    async def _finish(
        self, m: Claimed, status: str, *, error: str | None = None, next_at: datetime | None = None
    ) -> None:
        async with unit_of_work(self.sessions) as session:
            kept = await repository.finish(
                session, m.id, token=m.lease, status=status, error=error, next_at=next_at
            )
        if not kept:
            raise LeaseLost(m.id)
        logger.info(
            "message %s (%s, %s): %s%s",
            m.id,
            m.template,
            m.audience,
            status,
            f" - {error}" if error else "",
        )


_ALREADY_SENT = object()


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Wait until stopped, woken, or `timeout` passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
