"""Sends people's messages: the referrer's, the receiving team's, the person's and their
carers', by email, SMS or the in-app inbox, in the form each can use.

For each message that is due the sender
1. claims it with a lease (an UPDATE that only succeeds while no one else holds the message),
   so a second dispatcher never works on it at the same time and a killed one's messages come
   back when the lease runs out; the lease is renewed before every email or text, and a
   sender that lost it stops before sending;
2. fetches the personal details from the owning services' APIs with its own credential
   (contacts.py) and works out the recipients, their channel and form (messages.py);
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
import hashlib
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import messages as rules
from services.notifications.alerts.recipients import alert_recipients
from services.notifications.audience import ALERT_AUDIENCES, alert_waits_for_quiet_hours
from services.notifications.channels import (
    EmailChannel,
    InAppChannel,
    PermanentFailure,
    SmsChannel,
    TransientFailure,
)
from services.notifications.config import duty_rota
from services.notifications.contacts import (
    Contacts,
    DetailsGone,
    DetailsUnavailable,
    ReferralDetails,
    ServiceDetails,
)
from services.notifications.messages import (
    Channel,
    Outcome,
    Reach,
    RecipientOutcome,
    Route,
    StaffPreference,
    Variant,
)
from services.notifications.templates import Rendered, TemplateFailure, Templates
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


@dataclass
class Recipient:
    key: str  # user:<id> | org:<code> | service:<id> | person | carer:<id>
    reach: Reach
    variant: str = Variant.PLAIN.value
    language: str = "en"
    large_type: bool = False
    quiet: tuple[time | None, time | None] = (None, None)
    inbox_owner: str | None = None
    inbox_org: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # something needed for this recipient could not be fetched now: retry
    unavailable: str | None = None


@dataclass
class Past:
    """What the delivery log already says about one recipient of a message."""

    rows: int = 0
    sent: bool = False
    retrying: int = 0
    failed_channels: set[str] = field(default_factory=set)
    last_error: str | None = None


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
            rows = (
                await _exec(
                    session,
                    """
                WITH due AS (
                    SELECT id FROM message
                    WHERE status IN ('pending', 'held') AND next_attempt_at <= now()
                      AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
                UPDATE message m SET lease_until = now() + make_interval(secs => :lease)
                FROM due WHERE m.id = due.id
                RETURNING m.id, m.event_id, m.event_type, m.audience, m.template,
                          m.patient_id, m.referral_id, m.org, m.context, m.attempts,
                          m.lease_until""",
                    n=limit,
                    lease=LEASE_SECONDS,
                )
            ).all()
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
            recipients, nobody = await self._recipients(m, referral, service, service_problem)
        except DetailsGone as exc:
            await self._finish(m, "failed", error=str(exc))
            return
        except DetailsUnavailable as exc:
            await self._message_level_failure(m, f"details could not be fetched: {exc}")
            return
        if nobody:
            await self._finish(m, "skipped", error=nobody)
            return
        history = await self._history(m.id)
        outcomes = []
        for r in recipients:
            outcomes.append(
                await self._deliver(m, r, referral, service, history.get(r.key, Past()))
            )
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
        recipients = [
            Recipient(
                key=a.key,
                reach=a.reach,
                inbox_owner=a.key if a.inbox_org else None,
                inbox_org=a.inbox_org,
                extra={"audience": m.audience, **a.extra},
                **(
                    {
                        "variant": a.pref.variant,
                        "language": a.pref.language,
                        "large_type": a.pref.variant == Variant.LARGE_PRINT,
                        "quiet": (a.pref.quiet_start, a.pref.quiet_end) if waits else (None, None),
                    }
                    if a.pref
                    else {}
                ),
            )
            for a in found
        ]
        history = await self._history(m.id)
        outcomes = [
            await self._deliver(m, r, None, None, history.get(r.key, Past())) for r in recipients
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
            rows = (
                await _exec(
                    session,
                    """
                SELECT user_id, channels, email, mobile, quiet_start, quiet_end, language,
                       variant
                FROM preference WHERE org = :org AND 'email' = ANY(channels)
                  AND email IS NOT NULL ORDER BY user_id LIMIT 200""",
                    org=org,
                )
            ).all()
        return [
            (
                r.user_id,
                StaffPreference(
                    channels=tuple(r.channels),
                    email=r.email,
                    mobile=r.mobile,
                    quiet_start=r.quiet_start,
                    quiet_end=r.quiet_end,
                    language=r.language,
                    variant=r.variant,
                ),
            )
            for r in rows
        ]

    async def _service(self, service_id: str) -> tuple[ServiceDetails | None, str | None]:
        try:
            return await self.contacts.service(service_id), None
        except DetailsUnavailable as exc:
            return None, str(exc)

    async def _recipients(
        self,
        m: Claimed,
        referral: ReferralDetails,
        service: ServiceDetails | None,
        service_problem: str | None,
    ) -> tuple[list[Recipient], str | None]:
        """Who this message goes to, how and in which form; or why it goes to nobody."""
        audience = m.audience
        if audience == "referrer":
            user = referral.referrer_user
            pref = await self._preference(rules.staff_key(user, referral.referrer_org))
            return [
                Recipient(
                    key=f"user:{user}",
                    reach=rules.staff_reach(pref),
                    variant=pref.variant,
                    language=pref.language,
                    large_type=pref.variant == Variant.LARGE_PRINT,
                    quiet=(pref.quiet_start, pref.quiet_end),
                    inbox_owner=f"user:{user}",
                    inbox_org=referral.referrer_org,
                    extra={"audience": audience},
                )
            ], None
        if audience == "receiving_service":
            team = Recipient(
                key=f"org:{referral.to_org}",
                reach=Reach((Route(Channel.IN_APP),)),
                inbox_owner=f"org:{referral.to_org}",
                inbox_org=referral.to_org,
                extra={"audience": audience},
            )
            out = [team]
            if service_problem:
                out.append(
                    Recipient(
                        key=f"service:{referral.to_service_id}",
                        reach=Reach(()),
                        extra={"audience": audience},
                        unavailable=f"the directory could not be read: {service_problem}",
                    )
                )
            elif service is not None and rules.is_email(service.email):
                out.append(
                    Recipient(
                        key=f"service:{service.id}",
                        reach=Reach((Route(Channel.EMAIL, service.email),)),
                        extra={"audience": audience},
                    )
                )
            return out, None
        if audience == "person":
            contact = await self.contacts.person(referral.patient_id)
            comm = contact.communication if contact else {}
            reach = rules.person_reach(
                preferred=comm.get("preferred_channel"),
                email=comm.get("email"),
                mobile=comm.get("mobile"),
            )
            if contact is None:
                reach = Reach(
                    (),
                    "no reachable channel: the person has no care plan "
                    "recording an email address or mobile number",
                )
            return [
                Recipient(
                    key="person",
                    reach=reach,
                    variant=rules.person_variant(comm, referral.communication_needs).value,
                    language=rules.language_code(comm.get("language")),
                    large_type=rules.wants_large_type(comm, referral.communication_needs),
                    extra={"audience": audience},
                )
            ], None
        if audience == "carers":
            if not referral.consent_to_carer_sharing:
                return [], (
                    "nobody to tell: the person has not consented to sharing with "
                    "carers on this referral"
                )
            contact = await self.contacts.person(referral.patient_id)
            carers = [
                c
                for c in (contact.carers if contact else [])
                if rules.carer_may_be_told(consent_to_carer_sharing=True, may_see=c.may_see)
            ]
            if not carers:
                return [], ("nobody to tell: no carer on the person's plan has been given access")
            return [
                Recipient(
                    key=f"carer:{c.id}",
                    reach=rules.carer_reach(c.contact),
                    extra={"audience": audience, "carer_name": c.name},
                )
                for c in carers
            ], None
        raise DetailsGone(f"no recipients are known for the audience {audience!r}")

    async def _preference(self, user: str) -> StaffPreference:
        async with self.sessions() as session:
            row = (
                await _exec(
                    session,
                    """
                SELECT channels, email, mobile, quiet_start, quiet_end, language, variant
                FROM preference WHERE user_id = :u""",
                    u=user,
                )
            ).first()
        if row is None:
            return rules.DEFAULT_STAFF_PREFERENCE
        return StaffPreference(
            channels=tuple(row.channels),
            email=row.email,
            mobile=row.mobile,
            quiet_start=row.quiet_start,
            quiet_end=row.quiet_end,
            language=row.language,
            variant=row.variant,
        )

    async def _history(self, message_id: str) -> dict[str, Past]:
        async with self.sessions() as session:
            rows = (
                await _exec(
                    session,
                    """
                SELECT recipient, channel, status, error FROM message_delivery
                WHERE message_id = :m ORDER BY at""",
                    m=message_id,
                )
            ).all()
        out: dict[str, Past] = defaultdict(Past)
        for r in rows:
            p = out[r.recipient]
            p.rows += 1
            if r.status == "sent":
                p.sent = True
            elif r.status == "retrying":
                p.retrying += 1
            elif r.status == "failed":
                p.failed_channels.add(r.channel)
                p.last_error = r.error
        return dict(out)

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
        log = _Log(self, m, r, attempt)
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

    async def _transient(self, log: _Log, past: Past, channel: str, error: str) -> RecipientOutcome:
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
        self, m: Claimed, r: Recipient, route: Route, rendered: Rendered, log: _Log
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
            row = (
                await _exec(
                    session,
                    """
                UPDATE message SET lease_until = now() + make_interval(secs => :lease)
                WHERE id = :id AND lease_until = :token RETURNING lease_until""",
                    id=m.id,
                    token=m.lease,
                    lease=LEASE_SECONDS,
                )
            ).first()
        if row is None:
            raise LeaseLost(m.id)
        m.lease = row.lease_until

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
        # next_attempt_at is set only when there is a next attempt: setting it wakes the
        # dispatchers (the NOTIFY trigger), which a finished message has no need of
        sets = (
            "status = :st, lease_until = NULL, last_error = :err, updated_at = now(), "
            "attempts = attempts + 1"
        )
        params: dict[str, Any] = {"st": status, "err": error, "id": m.id, "token": m.lease}
        if next_at is not None:
            sets += ", next_attempt_at = :nxt"
            params["nxt"] = next_at
        async with unit_of_work(self.sessions) as session:
            row = (
                await _exec(
                    session,
                    f"UPDATE message SET {sets} "  # noqa: S608 - fixed
                    "WHERE id = :id AND lease_until = :token RETURNING id",
                    **params,
                )
            ).first()
        if row is None:
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


def log_ref(recipient_key: str) -> str:
    """A recipient as the log may name them: the kind and a short hash of the key. A key may
    hold what a care plan calls a carer (`carer:<id>`, and a client may choose a name for an
    id), and logs must hold no personal data; the hash still matches the delivery log's row."""
    kind, _, rest = recipient_key.partition(":")
    if not rest:
        return kind
    # "h" first: ten hex characters can all be digits, and a ten-digit run may pass the NHS
    # number check (Modulus 11), so a log line could look as if it held one
    return f"{kind}:h{hashlib.sha256(recipient_key.encode()).hexdigest()[:10]}"


class _Log:
    """Writes the delivery-log rows of one recipient's attempt."""

    def __init__(
        self, sender: MessageSender, m: Claimed, recipient: Recipient, attempt: int
    ) -> None:
        self.sender = sender
        self.message = m
        self.recipient = recipient
        self.attempt = attempt
        self.rendered: Rendered | None = None

    async def insert(
        self,
        session: AsyncSession,
        delivery_id: str,
        channel: str,
        status: str,
        *,
        provider_ref: str | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> bool:
        r, rendered = self.recipient, self.rendered
        row = (
            await _exec(
                session,
                """
            INSERT INTO message_delivery (id, message_id, recipient, channel, variant,
                                          language, attempt, status, provider_ref, error, note)
            VALUES (:id, :m, :rcp, :ch, :var, :lang, :att, :st, :ref, :err, :note)
            ON CONFLICT (message_id, recipient) WHERE status = 'sent' DO NOTHING
            RETURNING id""",
                id=delivery_id,
                m=self.message.id,
                rcp=r.key,
                ch=channel,
                var=rendered.variant if rendered else r.variant,
                lang=rendered.language if rendered else r.language,
                att=self.attempt,
                st=status,
                ref=provider_ref,
                err=error[:2000] if error else None,
                note=note or (rendered.note if rendered else None),
            )
        ).first()
        return row is not None

    async def write(
        self,
        channel: str,
        status: str,
        *,
        provider_ref: str | None = None,
        error: str | None = None,
        note: str | None = None,
        delivery_id: str | None = None,
    ) -> None:
        async with unit_of_work(self.sender.sessions) as session:
            await self.insert(
                session,
                delivery_id or f"dlv_{uuid.uuid4().hex}",
                channel,
                status,
                provider_ref=provider_ref,
                error=error,
                note=note,
            )


async def _exec(session: AsyncSession, sql: str, **params: Any) -> Any:
    return await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Wait until stopped, woken, or `timeout` passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
