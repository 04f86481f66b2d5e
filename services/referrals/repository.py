"""Every query of the referrals service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals.domain import OPEN
from services.referrals.models import DirectoryService, Referral, ReferralTransition
from shared.db import insert_rows


class DirectoryEntry(NamedTuple):
    """What a referral needs from the directory replica about a service."""

    service_id: str
    org_code: str
    category: str
    status: str


_service = DirectoryService.__table__  # type: ignore[attr-defined]
_DIRECTORY_ENTRY = select(
    _service.c.service_id, _service.c.org_code, _service.c.category, _service.c.status
).where(_service.c.service_id == bindparam("id"))


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, referral: Referral) -> None:
        self.session.add(referral)

    def add_transition(self, transition: ReferralTransition) -> None:
        self.session.add(transition)

    async def insert_new(
        self, referral: Referral, transition: ReferralTransition, *rows: SQLModel
    ) -> None:
        """A new referral, its first history row and `rows` (its audit entry, its event) in
        one statement. The referral is not in the session afterwards: a later change in the
        same transaction re-reads it."""
        await self.insert(referral, transition, *rows)

    async def insert(self, *rows: SQLModel) -> None:
        """Rows of any of this service's tables in one statement: one round trip (the ORM's
        flush sends one INSERT per table)."""
        statement, params = insert_rows(rows)
        await (await self.session.connection()).execute(statement, params)

    async def get(self, referral_id: str, *, for_update: bool = False) -> Referral | None:
        stmt = select(Referral).where(Referral.id == referral_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def by_source(
        self, source_system: str, source_ref: str, *, for_update: bool = False
    ) -> Referral | None:
        stmt = select(Referral).where(
            Referral.source_system == source_system, Referral.source_ref == source_ref
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def lock_source_ref(self, source_system: str, source_ref: str) -> None:
        """Serialise imports of one source referral (two at once would both try to create
        it): a transaction-scoped advisory lock on the pair."""
        await self.session.exec(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))").bindparams(  # type: ignore[call-overload]
                k=f"referral-history|{source_system}|{source_ref}"
            )
        )

    async def history(self, referral_id: str) -> list[ReferralTransition]:
        rows = await self.session.exec(
            select(ReferralTransition)
            .where(ReferralTransition.referral_id == referral_id)
            .order_by(col(ReferralTransition.id))
        )
        return list(rows.all())

    async def search(
        self,
        *,
        scope: ColumnElement[bool],
        states: Sequence[str] = (),
        patient_id: str | None = None,
        nhs_number: str | None = None,
        updated_since: datetime | None = None,
        flagged: bool | None = None,
        order_oldest_first: bool = False,
        order_created: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Referral], int]:
        conds: list[ColumnElement[bool]] = [scope]
        if states:
            conds.append(col(Referral.state).in_(list(states)))
        if patient_id:
            conds.append(Referral.patient_id == patient_id)
        if nhs_number:
            conds.append(Referral.nhs_number == nhs_number)
        if updated_since is not None:
            conds.append(col(Referral.updated_at) >= updated_since)
        if flagged is True:
            conds.append(func.cardinality(Referral.flags) > 0)
        elif flagged is False:
            conds.append(func.cardinality(Referral.flags) == 0)
        where = and_(*conds)
        total = (
            await self.session.exec(select(func.count()).select_from(Referral).where(where))
        ).one()
        waited = func.coalesce(Referral.submitted_at, Referral.created_at)
        order = [waited.asc() if order_oldest_first else waited.desc(), col(Referral.id)]
        # urgent first on a worklist, then by how long each has waited
        if order_oldest_first:
            order.insert(0, (Referral.priority == "urgent").desc())
        if order_created:
            # for paging (FHIR search): an order no change to a referral can alter, so a client
            # following the pages' next links sees each match once
            order = [col(Referral.created_at).asc(), col(Referral.id).asc()]
        rows = await self.session.exec(
            select(Referral).where(where).order_by(*order).limit(limit).offset(offset)
        )
        return list(rows.all()), int(total)

    async def open_referrals_to_service(self, service_id: str) -> list[Referral]:
        rows = await self.session.exec(
            select(Referral)
            .where(
                Referral.to_service_id == service_id,
                col(Referral.state).in_([s.value for s in OPEN]),
            )
            .with_for_update()
        )
        return list(rows.all())

    # --- the directory replica ---
    async def directory_service(self, service_id: str) -> DirectoryEntry | None:
        # a Core query, built once: loading an ORM object into the session's identity map
        # cost a visible share of a create's time (issue #20)
        row = (
            await (await self.session.connection()).execute(_DIRECTORY_ENTRY, {"id": service_id})
        ).first()
        return DirectoryEntry(*row) if row is not None else None

    async def upsert_directory_service(self, svc: DirectoryService) -> bool:
        """Store the directory's view of a service unless a newer one is stored; True if
        stored."""
        values = svc.model_dump()
        stmt = insert(DirectoryService).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["service_id"],
            set_={k: stmt.excluded[k] for k in values if k != "service_id"},
            where=DirectoryService.__table__.c.as_of <= stmt.excluded.as_of,  # type: ignore[attr-defined]
        ).returning(DirectoryService.__table__.c.service_id)  # type: ignore[attr-defined]
        return (await self.session.exec(stmt)).first() is not None  # type: ignore[call-overload]


def scope_for(
    *, org: str | None = None, ics: str | None = None, receiving_org: str | None = None
) -> ColumnElement[bool]:
    """Referrals a caller may list: all of their ICS, those sent to their organisation, or
    those to or from it."""
    sent = Referral.state != "draft"  # a draft is the referring organisation's alone
    if ics is not None:
        return and_(Referral.ics == ics, sent)
    if receiving_org is not None:
        return and_(Referral.to_org == receiving_org, sent)
    return or_(Referral.from_org == org, and_(Referral.to_org == org, sent))
