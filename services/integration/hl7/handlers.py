"""One HL7 v2 message in, one ACK out: decode, parse, map, apply (services/integration/
handlers.apply_message: one transaction, idempotent by MSH-4 + MSH-10, AA only after the commit)
and answer with an ACK built by the `hl7` library. Also the re-drive of an HL7 v2 dead letter,
which takes the same path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import hl7
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.domain import ContactReport, UnmappableReport
from services.integration.handlers import (
    REDRIVERS,
    Channel,
    Incoming,
    MessageResult,
    Refused,
    apply_messages,
)
from services.integration.hl7 import domain
from services.integration.models import DeadLetter, SourceSystem
from shared.db import unit_of_work
from shared.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL: Channel = "hl7v2"
#: how Waymark names itself in the ACKs it sends (MSH-3 sending application)
APPLICATION = "WAYMARK"
#: HL7 v2.5 table 0357 (message error condition codes) for ERR-3
ERROR_CODES = {
    "unreadable": "100",  # segment sequence error: the message cannot be read as HL7 v2
    "content": "102",  # data type error: a field's value is wrong or missing
    "unknown-sender": "204",  # unknown key identifier
    "reused-control-id": "205",  # duplicate key identifier
}
ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "207": "Application internal error",
}
#: an empty ACK's header, for a message whose own MSH cannot be read
BLANK_MSH = "MSH|^~\\&|||||||ACK^^ACK||P|2.4"


@dataclass
class Answer:
    result: MessageResult
    ack: str  # the ACK message (segments separated by CR), to frame with MLLP


def decode(raw: bytes) -> str:
    """The message's text: UTF-8 (MSH-18 UNICODE UTF-8, or ASCII), or ISO 8859-1 when MSH-18
    says 8859/1. Raises domain.Malformed."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        first = raw.split(b"\r", 1)[0]
        if b"8859/1" in first:
            return raw.decode("latin-1")
    raise domain.Malformed("the message is not UTF-8 text (nor ISO 8859-1 as MSH-18 8859/1)")


async def receive(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    raw: bytes,
    *,
    now: datetime | None = None,
    apply: Callable[[Incoming], Awaitable[MessageResult]] | None = None,
) -> Answer:
    """Apply one message and build its ACK. Returns only after the commit (or the refusal's
    dead letter) is durable; an exception (the database is down) means no ACK at all, so the
    sender resends."""
    try:
        text = decode(raw)
    except domain.Malformed as exc:
        text = raw.decode("utf-8", "replace")
        return await _unreadable(sessions, text, str(exc), now=now)
    try:
        message = domain.read(text)
        body_error = None
    except domain.Malformed as exc:
        # a readable header names the sender and the control id: the refusal is then the
        # sender's (its status, its dead letters), answered AE (fix the content and resend)
        message = _header_only(text)
        if message is None:
            return await _unreadable(sessions, text, str(exc), now=now)
        body_error = str(exc)
    head = domain.header(message)
    codes: list[str] = []

    def reports(source: SourceSystem) -> list[ContactReport]:
        if body_error is not None:
            codes.append(ERROR_CODES["unreadable"])
            raise UnmappableReport(body_error)
        try:
            return domain.reports(message, org_code=source.org_code)
        except domain.NotTaken as exc:
            codes.append(exc.code)
            raise Refused(str(exc)) from None

    item = Incoming(
        channel=CHANNEL,
        control_id=head.control_id or None,
        payload=text,
        reports=reports,
        sending_facility=head.sending_facility or None,
        now=now,
    )
    if apply is not None:
        result = await apply(item)
    else:
        [result] = await apply_messages(sessions, settings, [item])
    return Answer(result, build_ack(message, result, settings, code=codes[0] if codes else None))


async def _unreadable(
    sessions: async_sessionmaker[AsyncSession],
    text: str,
    reason: str,
    *,
    now: datetime | None = None,
) -> Answer:
    """A message whose header cannot be read: its sender is unknown, so its dead letter names
    no source. Answered AR."""
    letter = await record_unreadable(sessions, text, reason, now=now)
    result = MessageResult(ack_code="AR", detail=reason, dead_letter_id=letter)
    message = hl7.parse(BLANK_MSH)
    return Answer(result, build_ack(message, result, None, code=ERROR_CODES["unreadable"]))


def _header_only(text: str) -> hl7.Message | None:
    """The message's MSH alone, when that much can be read."""
    msh = text.replace("\n", "\r").split("\r", 1)[0]
    try:
        return domain.read(msh)
    except domain.Malformed:
        return None


async def record_unreadable(
    sessions: async_sessionmaker[AsyncSession],
    text: str,
    reason: str,
    *,
    now: datetime | None = None,
) -> str:
    """A dead letter for a message no source can be named for (unreadable, oversized)."""
    async with unit_of_work(sessions) as session:
        letter = DeadLetter(
            source_system=None,
            channel=CHANNEL,
            control_id=None,
            reason=reason,
            # PostgreSQL text holds no NUL; the rest is kept as received
            payload=text.replace("\x00", "\\x00"),
        )
        if now is not None:
            letter.received_at = now
        session.add(letter)
    logger.info("refused an unreadable HL7 v2 message (AR): %s", reason)
    return str(letter.id)


def build_ack(
    message: hl7.Message,
    result: MessageResult,
    settings: Settings | None,
    *,
    code: str | None = None,
) -> str:
    """The ACK of `message` (original acknowledgement mode): MSA-1 AA/AE/AR, MSA-2 its control
    id; for AE/AR the reason in MSA-3 and an ERR segment (ERR-3 HL7 table 0357, ERR-4 severity
    E, ERR-8 the reason)."""
    facility = settings.ics if settings is not None else ""
    try:
        ack = message.create_ack(result.ack_code, application=APPLICATION, facility=facility)
    except (TypeError, IndexError, KeyError):
        # the library needs MSH-9 with its components; a header without them still gets an
        # answer naming its control id
        ack = hl7.parse(BLANK_MSH).create_ack(
            result.ack_code, application=APPLICATION, facility=facility
        )
        ack.segment("MSA").assign_field(domain.header(message).control_id, 2)
    if result.ack_code != "AA":
        reason = message.escape((result.detail or "refused")[:400])
        code = code or _code(result)
        ack.segment("MSA").assign_field(reason, 3)
        err = ack.create_segment([ack.create_field(["ERR"])])
        err.assign_field(code, 3, 1, 1)
        err.assign_field(ERROR_TEXT.get(code, ""), 3, 1, 2)
        err.assign_field("HL70357", 3, 1, 3)
        err.assign_field("E", 4)
        err.assign_field(reason, 8)
        ack.append(err)
    return str(ack)


def _code(result: MessageResult) -> str:
    detail = result.detail or ""
    if result.ack_code == "AE":
        return ERROR_CODES["content"]
    if "not registered" in detail:
        return ERROR_CODES["unknown-sender"]
    if detail.startswith("control id"):
        return ERROR_CODES["reused-control-id"]
    if "control id" in detail:
        return "101"
    return "207"


async def redrive(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, letter: DeadLetter
) -> MessageResult:
    """Re-apply an HL7 v2 dead letter's payload through the same path as the listener."""
    return (await receive(sessions, settings, letter.payload.encode("utf-8"))).result


REDRIVERS[CHANNEL] = redrive
