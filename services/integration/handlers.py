"""The integration service's use cases. Every channel (HL7 v2 over MLLP, FHIR REST, bulk
extracts) hands each message to `apply_message`: one transaction per message, so the contacts,
their outbox events, the message log and any dead letter commit together, and a channel
acknowledges (HL7 v2 AA) only after `apply_message` has returned, that is after the commit.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.domain import ContactFacts, ContactReport, UnmappableReport, checked
from services.integration.domain import merged as merged_facts
from services.integration.events import encounter_recorded
from services.integration.models import DeadLetter, Encounter, InboundMessage, SourceSystem
from shared.access import Principal, Role
from shared.audit import record_audit
from shared.db import unit_of_work
from shared.errors import Conflict
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import ENCOUNTERS
from shared.vocabulary import ContactKind, ContactStatus

logger = logging.getLogger(__name__)

Channel = Literal["hl7v2", "fhir", "bulk"]
#: HL7 v2 acknowledgement codes (HL7 v2.5.1 table 0008), used by every channel's log:
#: AA accepted; AE an error in the message's content (fix it and resend); AR refused for
#: reasons outside its content (unknown sender, unsupported message, a reused control id)
AckCode = Literal["AA", "AE", "AR"]


class Refused(Exception):
    """The message is refused whatever its content (HL7 v2 AR): an unregistered or inactive
    sender, a message type Waymark does not take."""


@dataclass
class MessageResult:
    ack_code: AckCode
    detail: str | None = None
    duplicate: bool = False
    # (encounter id, revision) of every contact the message created or changed
    changed: list[tuple[str, int]] = field(default_factory=list)
    dead_letter_id: str | None = None


def digest(payload: str | bytes) -> str:
    raw = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha256(raw).hexdigest()


def source_principal(source: SourceSystem, settings: Settings) -> Principal:
    """A source system as the audit log names it."""
    return Principal(
        user=f"source:{source.id}",
        roles=frozenset({Role.PARTNER}),
        org=source.org_code,
        ics=settings.ics,
        name=source.name,
    )


async def record_contact(
    session: AsyncSession,
    *,
    settings: Settings,
    source: SourceSystem,
    report: ContactReport,
    channel: Channel,
    now: datetime,
) -> tuple[str, int] | None:
    """Create or revise a contact and stage its event. None when the report changes nothing.
    Raises UnmappableReport."""
    nhs, facts = checked(report, now=now)
    patient_id = pseudonymise(nhs, settings)
    row = await repository.encounter_by_ref(session, source.id, report.source_ref)
    if row is not None and row.patient_id != patient_id:
        # a visit number now names another person: a merge or a mistake at the source, which
        # a person must look at (never silently moved between journeys)
        raise UnmappableReport(
            f"visit {report.source_ref!r} was reported before for another NHS number"
        )
    known = _facts(row) if row is not None else None
    facts_now = merged_facts(known, facts)
    if facts_now is None:
        return None
    if row is None:
        row = Encounter(
            source_system=source.id,
            source_ref=report.source_ref,
            patient_id=patient_id,
            revision=0,
            channel=channel,
            contact_kind="",
            planned=False,
            status="",
            started_at=facts_now.started_at,
            source_org=facts_now.source_org,
        )
    _apply(row, facts_now)
    row.revision += 1
    row.updated_at = now
    session.add(row)
    await session.flush()
    add_event(session, topic=settings.topic(ENCOUNTERS), event=encounter_recorded(row))
    record_audit(
        session,
        principal=source_principal(source, settings),
        action="contact-recorded",
        resource_type="Encounter",
        resource_id=str(row.id),
        patient_id=patient_id,
        detail=f"{channel} revision {row.revision}",
    )
    return str(row.id), row.revision


async def apply_message(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    source_id: str | None = None,
    sending_facility: str | None = None,
    channel: Channel,
    control_id: str | None,
    payload: str,
    reports: Callable[[SourceSystem], Sequence[ContactReport]],
    now: datetime | None = None,
) -> MessageResult:
    """Apply one message: the contacts it reports, or a refusal with a dead letter. The sender
    is named by its source id or, for HL7 v2, by the sending facility (MSH-4) it registered.

    - An unknown or inactive sender, or a message without a control id: AR, dead letter.
    - A control id already accepted: the same message again is answered as before (AA) and
      applied nothing twice; other content under that control id is refused (AR).
    - `reports` raising UnmappableReport: AE with its reason, dead letter; raising Refused: AR.
    - Otherwise AA, after the commit.
    """
    now = now or datetime.now(UTC)
    fingerprint = digest(payload)
    async with unit_of_work(sessions) as session:
        source = None
        if source_id:
            source = await repository.source_by_id(session, source_id)
        elif sending_facility:
            source = await repository.source_by_facility(session, sending_facility)
        if source is None or not source.active:
            why = "the sending system is not registered with Waymark (or is switched off)"
            return await _dead(
                session, source_id if source else None, channel, control_id, payload, "AR", why, now
            )
        if not control_id:
            return await _dead(
                session,
                source.id,
                channel,
                None,
                payload,
                "AR",
                "the message has no control id (HL7 v2 MSH-10)",
                now,
            )
        await repository.lock_message_key(session, source.id, control_id)
        seen = await repository.message(session, source.id, control_id, lock=True)
        if seen is not None and seen.outcome == "accepted":
            if seen.digest == fingerprint:
                return MessageResult(ack_code="AA", duplicate=True)
            return await _dead(
                session,
                source.id,
                channel,
                control_id,
                payload,
                "AR",
                f"control id {control_id} was used before for another message",
                now,
                log=False,
            )
        try:
            async with session.begin_nested():
                changed = []
                for report in reports(source):
                    applied = await record_contact(
                        session,
                        settings=settings,
                        source=source,
                        report=report,
                        channel=channel,
                        now=now,
                    )
                    if applied is not None:
                        changed.append(applied)
        except UnmappableReport as exc:
            return await _dead(
                session, source.id, channel, control_id, payload, "AE", str(exc), now, seen=seen
            )
        except Refused as exc:
            return await _dead(
                session, source.id, channel, control_id, payload, "AR", str(exc), now, seen=seen
            )
        _log(
            session, seen, source.id, control_id, channel, "accepted", "AA", None, fingerprint, now
        )
        if seen is not None:
            # refused before (its letters are open): the resend that is applied closes them; a
            # control id never seen has no letters under this source
            await repository.resolve_dead_letters(
                session, source_id=source.id, control_id=control_id, by="resent", at=now
            )
    return MessageResult(ack_code="AA", changed=changed)


async def _dead(
    session: AsyncSession,
    source_id: str | None,
    channel: Channel,
    control_id: str | None,
    payload: str,
    ack: AckCode,
    reason: str,
    now: datetime,
    *,
    seen: InboundMessage | None = None,
    log: bool = True,
) -> MessageResult:
    letter = DeadLetter(
        source_system=source_id,
        channel=channel,
        control_id=control_id,
        received_at=now,
        reason=reason,
        payload=payload,
    )
    session.add(letter)
    if log and source_id is not None and control_id is not None:
        _log(
            session,
            seen,
            source_id,
            control_id,
            channel,
            "refused",
            ack,
            reason,
            digest(payload),
            now,
        )
    logger.info("refused a %s message (%s): %s", channel, ack, reason)
    return MessageResult(ack_code=ack, detail=reason, dead_letter_id=str(letter.id))


def _log(
    session: AsyncSession,
    seen: InboundMessage | None,
    source_id: str,
    control_id: str,
    channel: Channel,
    outcome: str,
    ack: AckCode,
    detail: str | None,
    fingerprint: str,
    now: datetime,
) -> None:
    row = seen or InboundMessage(source_system=source_id, control_id=control_id)
    row.channel = channel
    row.outcome = outcome
    row.ack_code = ack
    row.detail = detail
    row.digest = fingerprint
    row.received_at = now
    session.add(row)


def _facts(row: Encounter) -> ContactFacts:
    return ContactFacts(
        contact_kind=ContactKind(row.contact_kind),
        planned=row.planned,
        status=ContactStatus(row.status),
        started_at=row.started_at,
        ended_at=row.ended_at,
        source_org=row.source_org,
        chief_complaint=row.chief_complaint,
        diagnosis_codes=tuple(row.diagnosis_codes),
        attendance_category=row.attendance_category,
        discharge_destination=row.discharge_destination,
    )


def _apply(row: Encounter, facts: ContactFacts) -> None:
    row.contact_kind = facts.contact_kind.value
    row.planned = facts.planned
    row.status = facts.status.value
    row.started_at = facts.started_at
    row.ended_at = facts.ended_at
    row.source_org = facts.source_org
    row.chief_complaint = facts.chief_complaint
    row.diagnosis_codes = list(facts.diagnosis_codes)
    row.attendance_category = facts.attendance_category
    row.discharge_destination = facts.discharge_destination


#: how each channel re-applies a dead letter's payload through its own path (registered by the
#: channel's module: hl7v2 by services/integration/hl7, fhir by services/integration/fhir)
Redriver = Callable[
    [async_sessionmaker[AsyncSession], Settings, DeadLetter], Awaitable[MessageResult]
]
REDRIVERS: dict[str, Redriver] = {}


async def redrive(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    letter_id: uuid.UUID,
    actor: Principal,
) -> MessageResult | None:
    """Apply a dead letter again through its channel's path (after the sender was registered,
    a mapping fixed ...). None when there is no open letter of that id."""
    async with unit_of_work(sessions) as session:
        letter = await repository.dead_letter(session, letter_id, lock=True)
        if letter is None or letter.status != "open":
            return None
        if letter.channel not in REDRIVERS:
            raise Conflict(f"{letter.channel} messages cannot be re-driven yet")
        letter.attempts += 1
        session.add(letter)
    redriver = REDRIVERS[letter.channel]
    result = await redriver(sessions, settings, letter)
    async with unit_of_work(sessions) as session:
        letter = await repository.dead_letter(session, letter_id, lock=True)
        if letter is not None and letter.status == "open" and result.ack_code == "AA":
            letter.status = "redriven"
            letter.resolved_at = datetime.now(UTC)
            letter.resolved_by = actor.identity
            session.add(letter)
        record_audit(
            session,
            principal=actor,
            action="dead-letter-redriven",
            resource_type="DeadLetter",
            resource_id=str(letter_id),
            detail=result.ack_code + (f": {result.detail}" if result.detail else ""),
        )
    return result


async def discard(
    sessions: async_sessionmaker[AsyncSession], *, letter_id: uuid.UUID, actor: Principal
) -> bool:
    async with unit_of_work(sessions) as session:
        letter = await repository.dead_letter(session, letter_id, lock=True)
        if letter is None or letter.status != "open":
            return False
        letter.status = "discarded"
        letter.resolved_at = datetime.now(UTC)
        letter.resolved_by = actor.identity
        session.add(letter)
        record_audit(
            session,
            principal=actor,
            action="dead-letter-discarded",
            resource_type="DeadLetter",
            resource_id=str(letter_id),
        )
    return True
