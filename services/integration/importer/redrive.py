"""Re-driving a bulk dead letter: the record it holds is mapped again and applied through the
same path as the import (an A&E or GP contact through `apply_message`, an e-RS referral through
the referrals service's historical import), under its own control id."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.handlers import REDRIVERS, MessageResult
from services.integration.importer.domain import Kind
from services.integration.importer.records import apply_contact, apply_referral, record_of
from services.integration.importer.referrals import HistoryClient
from services.integration.models import DeadLetter
from shared.settings import Settings


async def redrive_bulk(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, letter: DeadLetter
) -> MessageResult:
    kind, item = record_of(letter.payload)
    now = datetime.now(UTC)
    assert letter.source_system is not None and letter.control_id is not None
    if kind is Kind.ERS:
        client = HistoryClient(settings)
        try:
            outcome, reason = await apply_referral(
                sessions,
                client,
                source_id=letter.source_system,
                control_id=letter.control_id,
                item=item,
                now=now,
                service_map={},
            )
        finally:
            await client.aclose()
    else:
        outcome, reason = await apply_contact(
            sessions,
            settings,
            source_id=letter.source_system,
            control_id=letter.control_id,
            kind=kind,
            item=item,
            now=now,
        )
    return MessageResult(ack_code="AE" if outcome == "refused" else "AA", detail=reason)


REDRIVERS["bulk"] = redrive_bulk
