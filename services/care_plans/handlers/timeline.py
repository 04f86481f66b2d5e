"""The person's referral journey (the plan's timeline), from the referral events."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.models import TimelineEntry
from services.care_plans.repository import CarePlanRepository
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData


async def apply_referral_event(
    *, session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> bool:
    """Add a step to the person's referral journey (the plan's timeline) and keep their
    registered GP practice; True if new."""
    repo = CarePlanRepository(session)
    if data.registered_practice:
        await repo.set_registered_practice(
            patient_id=event.subject,
            org=data.registered_practice,
            as_of=event.time,
            event_id=event.id,
        )
    return await repo.add_timeline_entry(
        TimelineEntry(
            event_id=event.id,
            patient_id=event.subject,
            referral_id=data.referral_id,
            event_type=event.type.removeprefix("uk.waymark.referral."),
            state=data.state,
            previous_state=data.previous_state,
            from_org=data.from_org,
            to_org=data.to_org,
            to_service_id=data.to_service_id,
            service_category=data.service_category,
            transition_reason=data.transition_reason,
            occurred_at=event.time,
        )
    )
