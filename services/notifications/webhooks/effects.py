"""What the notifications consumer owes partners for a referral event, in the consumer's
transaction: one webhook delivery per matching subscription of the two organisations the
referral concerns (audience.subscription_matches). Alert events' deliveries are queued with
the alert's other effects (alerts/effects.py)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import audience
from services.notifications.webhooks import repository
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData


async def queue_referral_deliveries(
    session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> None:
    # only subscriptions of the two organisations the referral concerns are even looked at
    subs = await repository.subscriptions_for_referral(
        session, from_org=data.from_org, to_org=data.to_org, event_type=event.type
    )
    raw = data.model_dump(mode="json")
    payload = event.model_dump(mode="json")
    for sub in subs:
        if not audience.subscription_matches(
            org=sub.org,
            event_types=list(sub.event_types),
            filters=sub.filters or {},
            event_type=event.type,
            data=raw,
        ):
            continue
        await repository.queue_delivery(
            session,
            subscription_id=sub.id,
            event_id=event.id,
            event_type=event.type,
            event_time=event.time,
            payload=payload,
        )
