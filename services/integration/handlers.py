"""The integration service's use cases. Every channel (HL7 v2 over MLLP, FHIR REST, bulk
extracts) hands its messages to `apply_message` or, a batch at a time, `apply_messages`: one
transaction, so the contacts, their outbox events, the message log and any dead letter commit
together, and a channel acknowledges (HL7 v2 AA) only after they have returned, that is after
the commit. Also the operators' re-drive and discard of dead letters.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.applying import (
    AckCode,
    Channel,
    Incoming,
    MessageResult,
    Refused,
    apply_in,
    digest,
    source_principal,
)
from services.integration.domain import ContactReport
from services.integration.models import DeadLetter, SourceSystem
from shared.access import Principal
from shared.audit import record_audit
from shared.db import unit_of_work
from shared.errors import Conflict
from shared.settings import Settings

__all__ = [
    "REDRIVERS",
    "AckCode",
    "Channel",
    "Incoming",
    "MessageResult",
    "Refused",
    "apply_message",
    "apply_messages",
    "digest",
    "discard",
    "redrive",
    "source_principal",
]

logger = logging.getLogger(__name__)


async def apply_messages(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, items: Sequence[Incoming]
) -> list[MessageResult]:
    """Apply a batch of messages in one transaction (services/integration/applying.py), each
    all or nothing. Returns only after the commit: then, and only then, may a channel
    acknowledge them (HL7 v2 AA). An exception (the database away) means none is applied."""
    async with repository.transaction(sessions) as db:
        results = await apply_in(db, settings, items)
    return results


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
    item = Incoming(
        channel=channel,
        control_id=control_id,
        payload=payload,
        reports=reports,
        source_id=source_id,
        sending_facility=sending_facility,
        now=now,
    )
    return (await apply_messages(sessions, settings, [item]))[0]


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
