"""Every query of the care plans service."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.models import Assessment, CarePlan, CarePlanVersion, TimelineEntry


class CarePlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: CarePlan | CarePlanVersion | Assessment) -> None:
        self.session.add(row)

    async def get(self, plan_id: str, *, for_update: bool = False) -> CarePlan | None:
        stmt = select(CarePlan).where(CarePlan.id == plan_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def by_patient(self, patient_id: str) -> CarePlan | None:
        return (await self.session.exec(
            select(CarePlan).where(CarePlan.patient_id == patient_id))).first()

    async def version(self, plan_id: str, version: int) -> CarePlanVersion | None:
        return await self.session.get(CarePlanVersion, (plan_id, version))

    async def versions(self, plan_id: str) -> list[CarePlanVersion]:
        rows = await self.session.exec(select(CarePlanVersion)
                                       .where(CarePlanVersion.plan_id == plan_id)
                                       .order_by(col(CarePlanVersion.version)))
        return list(rows.all())

    async def assessment(self, assessment_id: str) -> Assessment | None:
        return await self.session.get(Assessment, assessment_id)

    async def assessments(self, plan_id: str, instrument: str | None = None
                          ) -> list[Assessment]:
        stmt = select(Assessment).where(Assessment.plan_id == plan_id)
        if instrument is not None:
            stmt = stmt.where(Assessment.instrument == instrument)
        rows = await self.session.exec(stmt.order_by(col(Assessment.authored),
                                                     col(Assessment.recorded_at)))
        return list(rows.all())

    async def add_timeline_entry(self, entry: TimelineEntry) -> bool:
        """Store a journey step once (a redelivered event is ignored); True if stored."""
        values = entry.model_dump()
        stmt = (insert(TimelineEntry).values(**values)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(TimelineEntry.__table__.c.event_id))  # type: ignore[attr-defined]
        return (await self.session.exec(stmt)).first() is not None  # type: ignore[call-overload]

    async def timeline(self, patient_id: str, limit: int = 500) -> list[TimelineEntry]:
        rows = await self.session.exec(
            select(TimelineEntry).where(TimelineEntry.patient_id == patient_id)
            .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.event_id)).limit(limit))
        return list(rows.all())
