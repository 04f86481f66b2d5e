"""Every query of the integration service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.models import DeadLetter, Encounter, InboundMessage, SourceSystem


async def source_by_id(session: AsyncSession, source_id: str) -> SourceSystem | None:
    return await session.get(SourceSystem, source_id)


async def source_by_facility(session: AsyncSession, facility: str) -> SourceSystem | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(SourceSystem).where(func.upper(SourceSystem.sending_facility) == facility.upper())
    )
    return rows.scalars().first()  # type: ignore[no-any-return]


async def source_by_client(session: AsyncSession, client_id: str) -> SourceSystem | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(SourceSystem).where(SourceSystem.client_id == client_id)
    )
    return rows.scalars().first()  # type: ignore[no-any-return]


async def sources(session: AsyncSession) -> list[SourceSystem]:
    rows = await session.exec(select(SourceSystem).order_by(SourceSystem.id))  # type: ignore[call-overload]
    return list(rows.scalars().all())


async def message(
    session: AsyncSession, source_id: str, control_id: str, *, lock: bool = False
) -> InboundMessage | None:
    q = select(InboundMessage).where(
        InboundMessage.source_system == source_id, InboundMessage.control_id == control_id
    )
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.scalars().first()  # type: ignore[no-any-return]


async def lock_message_key(session: AsyncSession, source_id: str, control_id: str) -> None:
    """Serialise two deliveries of one control id (a sender that resends while the first is
    still being applied): the second waits for the first's commit, then sees it."""
    key = f"{source_id}\x1f{control_id}"
    await session.exec(  # type: ignore[call-overload]
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))").bindparams(k=key)
    )


async def encounter_by_ref(
    session: AsyncSession, source_id: str, source_ref: str
) -> Encounter | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(Encounter)
        .where(Encounter.source_system == source_id, Encounter.source_ref == source_ref)
        .with_for_update()
    )
    return rows.scalars().first()  # type: ignore[no-any-return]


async def open_dead_letters(
    session: AsyncSession, *, limit: int, source_id: str | None = None
) -> list[DeadLetter]:
    q = select(DeadLetter).where(DeadLetter.status == "open")
    if source_id is not None:
        q = q.where(DeadLetter.source_system == source_id)
    rows = await session.exec(q.order_by(DeadLetter.received_at).limit(limit))  # type: ignore[call-overload]
    return list(rows.scalars().all())


async def dead_letter(
    session: AsyncSession, letter_id: uuid.UUID, *, lock: bool = False
) -> DeadLetter | None:
    q = select(DeadLetter).where(DeadLetter.id == letter_id)
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.scalars().first()  # type: ignore[no-any-return]


async def resolve_dead_letters(
    session: AsyncSession, *, source_id: str, control_id: str, by: str, at: datetime
) -> None:
    """A message applied at last (resent by its sender or re-driven): its dead letters close."""
    await session.exec(  # type: ignore[call-overload]
        update(DeadLetter)
        .where(
            DeadLetter.source_system == source_id,  # type: ignore[arg-type]
            DeadLetter.control_id == control_id,  # type: ignore[arg-type]
            DeadLetter.status == "open",  # type: ignore[arg-type]
        )
        .values(status="redriven", resolved_at=at, resolved_by=by)
    )


async def status_by_source(session: AsyncSession) -> list[dict[str, Any]]:
    """Per registered source: messages received, accepted, refused, and when last seen."""
    rows = await session.exec(  # type: ignore[call-overload]
        text(
            """SELECT s.id, s.name, s.org_code, s.channel, s.active,
                      count(m.control_id) AS received,
                      count(m.control_id) FILTER (WHERE m.outcome = 'accepted') AS accepted,
                      count(m.control_id) FILTER (WHERE m.outcome = 'refused') AS refused,
                      max(m.received_at) AS last_seen,
                      (SELECT count(*) FROM dead_letter d
                        WHERE d.source_system = s.id AND d.status = 'open') AS dead_letters
                 FROM source_system s LEFT JOIN inbound_message m ON m.source_system = s.id
                GROUP BY s.id ORDER BY s.id"""
        )
    )
    return [dict(r._mapping) for r in rows]


async def unknown_sender_letters(session: AsyncSession) -> int:
    rows = await session.exec(  # type: ignore[call-overload]
        text("SELECT count(*) FROM dead_letter WHERE source_system IS NULL AND status = 'open'")
    )
    return int(rows.scalar_one())
