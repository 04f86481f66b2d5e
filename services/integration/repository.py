"""Every query of the integration service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, text, tuple_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.models import (
    DeadLetter,
    Encounter,
    EncounterAlias,
    InboundMessage,
    SourceSystem,
)


async def source_by_id(session: AsyncSession, source_id: str) -> SourceSystem | None:
    return await session.get(SourceSystem, source_id)


async def source_by_client(session: AsyncSession, client_id: str) -> SourceSystem | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(SourceSystem).where(SourceSystem.client_id == client_id)
    )
    return rows.first()  # type: ignore[no-any-return]


async def sources(session: AsyncSession) -> list[SourceSystem]:
    rows = await session.exec(select(SourceSystem).order_by(SourceSystem.id))  # type: ignore[call-overload]
    return list(rows.all())


async def message(
    session: AsyncSession, source_id: str, control_id: str, *, lock: bool = False
) -> InboundMessage | None:
    q = select(InboundMessage).where(
        InboundMessage.source_system == source_id, InboundMessage.control_id == control_id
    )
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.first()  # type: ignore[no-any-return]


async def open_dead_letters(
    session: AsyncSession, *, limit: int, source_id: str | None = None
) -> list[DeadLetter]:
    q = select(DeadLetter).where(DeadLetter.status == "open")
    if source_id is not None:
        q = q.where(DeadLetter.source_system == source_id)
    rows = await session.exec(q.order_by(DeadLetter.received_at).limit(limit))  # type: ignore[call-overload]
    return list(rows.all())


async def dead_letter(
    session: AsyncSession, letter_id: uuid.UUID, *, lock: bool = False
) -> DeadLetter | None:
    q = select(DeadLetter).where(DeadLetter.id == letter_id)
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.first()  # type: ignore[no-any-return]


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


# --- a batch of messages (services/integration/applying.py): one query each --------------------


async def sources_named(
    session: AsyncSession, ids: set[str], facilities: set[str]
) -> list[SourceSystem]:
    """The sources with these ids, or these sending facilities (MSH-4, any case)."""
    q = select(SourceSystem).where(
        SourceSystem.id.in_(ids)  # type: ignore[attr-defined]
        | func.upper(SourceSystem.sending_facility).in_(facilities)
    )
    return list((await session.exec(q)).all())  # type: ignore[call-overload]


async def lock_message_keys(session: AsyncSession, keys: list[tuple[str, str]]) -> None:
    """Serialise deliveries of one control id across processes (a sender resending while the
    first is still being applied elsewhere): the later waits for the earlier's commit, then
    sees it. Taken in one order in every batch, so two batches never wait on each other."""
    await session.exec(  # type: ignore[call-overload]
        text(
            "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT hashtextextended(k, 0) AS h "
            "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS ordered"
        ).bindparams(keys=[f"{s}\x1f{c}" for s, c in keys])
    )


async def messages_locked(
    session: AsyncSession, keys: list[tuple[str, str]]
) -> list[InboundMessage]:
    q = (
        select(InboundMessage)
        .where(tuple_(InboundMessage.source_system, InboundMessage.control_id).in_(keys))
        .with_for_update()
    )
    return list((await session.exec(q)).all())  # type: ignore[call-overload]


async def contacts_locked(
    session: AsyncSession, refs: list[tuple[str, str]]
) -> list[tuple[tuple[str, str], Encounter]]:
    """The contacts these (source, source id) name, as first reported or as another source's
    alias, locked, each with the ref that found it."""
    own = (
        select(Encounter)
        .where(tuple_(Encounter.source_system, Encounter.source_ref).in_(refs))
        .order_by(Encounter.id)  # type: ignore[arg-type]
        .with_for_update()
    )
    found = [((e.source_system, e.source_ref), e) for e in (await session.exec(own)).all()]  # type: ignore[call-overload]
    aliased = (
        select(EncounterAlias.source_system, EncounterAlias.source_ref, Encounter)
        .join(Encounter, Encounter.id == EncounterAlias.encounter_id)  # type: ignore[arg-type]
        .where(tuple_(EncounterAlias.source_system, EncounterAlias.source_ref).in_(refs))
        .order_by(Encounter.id)  # type: ignore[arg-type]
        .with_for_update(of=Encounter)  # type: ignore[arg-type]
    )
    for source_system, source_ref, e in (await session.exec(aliased)).all():  # type: ignore[call-overload]
        found.append(((source_system, source_ref), e))
    return found


async def contacts_of_people(
    session: AsyncSession, patients: list[str], since: datetime, until: datetime
) -> list[Encounter]:
    """Contacts of these people starting between `since` and `until`, locked: the contacts a
    new report from another source may be."""
    q = (
        select(Encounter)
        .where(
            Encounter.patient_id.in_(patients),  # type: ignore[attr-defined]
            Encounter.started_at >= since,  # type: ignore[operator]
            Encounter.started_at <= until,  # type: ignore[operator]
        )
        .order_by(Encounter.id)  # type: ignore[arg-type]
        .with_for_update()
    )
    return list((await session.exec(q)).all())  # type: ignore[call-overload]


async def close_dead_letters(
    session: AsyncSession,
    keys: list[tuple[str, str]],
    *,
    keep: list[uuid.UUID],
    by: str,
    at: datetime,
) -> None:
    """Messages applied at last (resent by their senders or re-driven): their open letters
    close, except `keep` (letters written in this very transaction)."""
    await session.exec(  # type: ignore[call-overload]
        update(DeadLetter)
        .where(
            tuple_(DeadLetter.source_system, DeadLetter.control_id).in_(keys),
            DeadLetter.status == "open",  # type: ignore[arg-type]
            DeadLetter.id.not_in(keep),  # type: ignore[union-attr]
        )
        .values(status="redriven", resolved_at=at, resolved_by=by)
    )
