"""What notifications keeps of referrals, from their events (the consumer's transaction):
the referral index (which organisations each referral concerns, for the alert inbox's `org`
filter and the delivery log's scope) and the referral history (every state change, for the
ICS leads' overview). Its queries, through the one database helper."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData, ReferralFlagged


async def index_referral(session: AsyncSession, event: CloudEvent, data: ReferralEventData) -> None:
    """The referral's organisations, service and state (a newer event's win)."""
    await execute(
        session,
        """
        INSERT INTO referral_index (referral_id, patient_id, from_org, to_org, to_service_id,
                                    service_category, state, updated_at)
        VALUES (:rid, :pid, :f, :t, :svc, :cat, :state, :at)
        ON CONFLICT (referral_id) DO UPDATE SET state = EXCLUDED.state,
            to_org = EXCLUDED.to_org, to_service_id = EXCLUDED.to_service_id,
            service_category = EXCLUDED.service_category, updated_at = EXCLUDED.updated_at
        WHERE referral_index.updated_at <= EXCLUDED.updated_at""",
        rid=data.referral_id,
        pid=event.subject,
        f=data.from_org,
        t=data.to_org,
        svc=data.to_service_id,
        cat=data.service_category,
        state=data.state,
        at=event.time,
    )


async def record_history(session: AsyncSession, event: CloudEvent, data: ReferralEventData) -> None:
    """The state change, once per event."""
    if isinstance(data, ReferralFlagged):
        return  # a flag for the referrer: the state did not change
    await execute(
        session,
        """
        INSERT INTO referral_history (event_id, referral_id, patient_id, state, previous_state,
                                      service_category, from_org, to_org, at)
        VALUES (:eid, :rid, :pid, :state, :prev, :cat, :f, :t, :at)
        ON CONFLICT (event_id) DO NOTHING""",
        eid=event.id,
        rid=data.referral_id,
        pid=event.subject,
        state=data.state,
        prev=data.previous_state,
        cat=data.service_category,
        f=data.from_org,
        t=data.to_org,
        at=event.time,
    )
