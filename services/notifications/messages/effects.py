"""What the notifications consumer owes people for an event, in the consumer's transaction
(with its inbox row, so a redelivered event queues nothing twice): one message per (event,
audience) the audience rules name for a referral event (who exactly receives it, and how, is
worked out when it is sent); a break-glass read's notice to the ICS's information governance
team. An alert's messages are queued with its other effects (alerts/effects.py)."""

from __future__ import annotations

import uuid
from datetime import UTC

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import audience
from services.notifications.messages import repository
from shared.events.care_plans import BreakGlassUsed
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData
from shared.settings import Settings


async def queue_referral_messages(
    session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> None:
    ctx = audience.message_context(data.model_dump(mode="json"))
    for route in audience.routes_for(event.type):
        org = (
            data.to_org if route.audience == audience.Audience.RECEIVING_SERVICE else data.from_org
        )
        await repository.queue_message(
            session,
            event_id=event.id,
            event_type=event.type,
            audience=route.audience.value,
            template=route.template,
            patient_id=event.subject,
            referral_id=data.referral_id,
            org=org,
            context=ctx,
        )


async def tell_information_governance(
    session: AsyncSession, event: CloudEvent, data: BreakGlassUsed, settings: Settings
) -> None:
    """A break-glass read reaches the ICS's information governance team inbox, once (the
    consumer's inbox row commits with it). Codes and ids only: the stated reason and who it
    was are in the care plans service's audit log, where the review reads them."""
    ig = settings.ig_org
    until = data.expires_at.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")
    await repository.add_inbox_item(
        session,
        item_id=f"inb_{uuid.uuid5(uuid.NAMESPACE_URL, f'break-glass/{event.id}').hex}",
        owner=f"org:{ig}",
        org=ig,
        subject=f"Break-glass access to a care plan by {data.org}",
        body=(
            f"A clinician of {data.org} used emergency access to care plan "
            f"{data.plan_id} (person {event.subject}) at "
            f"{event.time.astimezone(UTC).strftime('%d %b %Y %H:%M UTC')}, reason "
            f"'{data.reason_code}', until {until}. Review it: the care plans "
            f"service's audit log holds the stated reason (grant {data.grant_id})."
        ),
    )
