"""Every query of the care plans service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.models import (
    Assessment,
    BreakGlassGrant,
    CarePlan,
    CarePlanVersion,
    RegisteredPractice,
    TimelineEntry,
)


class CarePlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: CarePlan | CarePlanVersion | Assessment | BreakGlassGrant) -> None:
        self.session.add(row)

    async def get(self, plan_id: str, *, for_update: bool = False) -> CarePlan | None:
        stmt = select(CarePlan).where(CarePlan.id == plan_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def by_patient(self, patient_id: str) -> CarePlan | None:
        return (
            await self.session.exec(select(CarePlan).where(CarePlan.patient_id == patient_id))
        ).first()

    async def version(self, plan_id: str, version: int) -> CarePlanVersion | None:
        return await self.session.get(CarePlanVersion, (plan_id, version))

    async def versions(self, plan_id: str) -> list[CarePlanVersion]:
        rows = await self.session.exec(
            select(CarePlanVersion)
            .where(CarePlanVersion.plan_id == plan_id)
            .order_by(col(CarePlanVersion.version))
        )
        return list(rows.all())

    async def assessment(self, assessment_id: str) -> Assessment | None:
        return await self.session.get(Assessment, assessment_id)

    async def assessments(self, plan_id: str, instrument: str | None = None) -> list[Assessment]:
        stmt = select(Assessment).where(Assessment.plan_id == plan_id)
        if instrument is not None:
            stmt = stmt.where(Assessment.instrument == instrument)
        rows = await self.session.exec(
            stmt.order_by(col(Assessment.authored), col(Assessment.recorded_at))
        )
        return list(rows.all())

    async def add_timeline_entry(self, entry: TimelineEntry) -> bool:
        """Store a journey step once (a redelivered event is ignored); True if stored."""
        values = entry.model_dump()
        stmt = (
            insert(TimelineEntry)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(TimelineEntry.__table__.c.event_id)
        )  # type: ignore[attr-defined]
        return (await self.session.exec(stmt)).first() is not None  # type: ignore[call-overload]

    async def timeline(self, patient_id: str, limit: int = 500) -> list[TimelineEntry]:
        rows = await self.session.exec(
            select(TimelineEntry)
            .where(TimelineEntry.patient_id == patient_id)
            .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.event_id))
            .limit(limit)
        )
        return list(rows.all())

    # --- care relationships -------------------------------------------------------------

    async def has_referral_with(self, patient_id: str, org: str) -> bool:
        """Whether a referral of the person's came from or went to `org`."""
        stmt = (
            select(TimelineEntry.event_id)
            .where(
                TimelineEntry.patient_id == patient_id,
                or_(col(TimelineEntry.from_org) == org, col(TimelineEntry.to_org) == org),
            )
            .limit(1)
        )
        return (await self.session.exec(stmt)).first() is not None

    async def is_known(self, patient_id: str) -> bool:
        """Whether any referral of the person's reached this deployment."""
        stmt = select(TimelineEntry.event_id).where(TimelineEntry.patient_id == patient_id).limit(1)
        return (await self.session.exec(stmt)).first() is not None

    async def registered_practice(self, patient_id: str) -> str | None:
        row = await self.session.get(RegisteredPractice, patient_id)
        return row.org if row is not None else None

    async def set_registered_practice(
        self, *, patient_id: str, org: str, as_of: datetime, event_id: str
    ) -> None:
        """Keep the practice the latest event gave (events may arrive out of order)."""
        table = RegisteredPractice.__table__  # type: ignore[attr-defined]
        stmt = insert(RegisteredPractice).values(
            patient_id=patient_id, org=org, as_of=as_of, event_id=event_id
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["patient_id"],
            set_={
                "org": stmt.excluded.org,
                "as_of": stmt.excluded.as_of,
                "event_id": stmt.excluded.event_id,
            },
            where=table.c.as_of < stmt.excluded.as_of,
        )
        await self.session.exec(stmt)  # type: ignore[call-overload]

    async def active_grant(
        self, plan_id: str, user_identity: str, now: datetime
    ) -> BreakGlassGrant | None:
        stmt = (
            select(BreakGlassGrant)
            .where(
                BreakGlassGrant.plan_id == plan_id,
                BreakGlassGrant.user_identity == user_identity,
                BreakGlassGrant.expires_at > now,
            )
            .order_by(col(BreakGlassGrant.expires_at).desc())
            .limit(1)
        )
        return (await self.session.exec(stmt)).first()
