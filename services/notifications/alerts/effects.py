"""What the notifications consumer does with a journey alert event, in the consumer's
transaction (with its inbox row, so a redelivered event changes nothing): the coordinators'
alert inbox takes it (handlers.apply_journey_change: the highest `seq` wins; the journey's echo
of a coordinator's action confirms it without moving the ETag), and the alert's addressees
are owed their deliveries (#15; the rules are in audience.py): one message per (event,
audience) and one webhook delivery per matching partner subscription. Who exactly a queued
alert message reaches is the dispatcher's business (recipients.py).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import audience
from services.notifications.alerts import handlers
from services.notifications.alerts.domain import AlertContent
from services.notifications.messages import repository as messages
from services.notifications.webhooks import repository as webhooks
from shared.events.envelope import CloudEvent
from shared.events.journeys import AlertEventData
from shared.settings import Settings


async def apply_alert_event(
    session: AsyncSession, event: CloudEvent, data: AlertEventData, settings: Settings
) -> None:
    await _upsert_alert(session, event, data, settings)
    # the organisations it is addressed to, partners' subscriptions, the duty rota
    await queue_alert_deliveries(session, event, data)


async def _upsert_alert(
    session: AsyncSession, event: CloudEvent, data: AlertEventData, settings: Settings
) -> None:
    # the inbox's read model (handlers.apply_journey_change): the highest `seq` wins; the
    # journey's echo of a coordinator's action confirms it without moving the ETag
    await handlers.apply_journey_change(
        session,
        alert_id=data.alert_id,
        patient_id=event.subject,
        ics=settings.ics,
        change=event.type.removeprefix(audience.ALERT_PREFIX),
        content=AlertContent(
            kind=data.kind,
            rule=data.rule,
            severity=data.severity,
            status=data.status,
            assignee=data.assignee,
            referral_ids=tuple(data.referral_ids),
        ),
        seq=data.seq,
        at=event.time,
    )


async def queue_alert_deliveries(
    session: AsyncSession, event: CloudEvent, data: AlertEventData
) -> None:
    """What an alert event owes its addressed organisations and the duty rota."""
    orgs = sorted(set(data.recipient_orgs))
    raw = data.model_dump(mode="json")
    for route in audience.alert_routes(event.type, rule=data.rule, recipient_orgs=orgs):
        await messages.queue_message(
            session,
            event_id=event.id,
            event_type=event.type,
            audience=route.audience.value,
            template=route.template,
            patient_id=event.subject,
            referral_id=None,
            org=None,
            context=audience.alert_message_context(raw),
        )
    if not orgs or event.type not in audience.SUBSCRIBABLE_ALERT_TYPES:
        return
    subs = await webhooks.subscriptions_for_alert(session, orgs=orgs, event_type=event.type)
    payload = audience.alert_partner_payload(event.model_dump(mode="json"))
    for sub in subs:
        if not audience.alert_subscription_matches(
            org=sub.org,
            event_types=list(sub.event_types),
            event_type=event.type,
            recipient_orgs=orgs,
        ):
            continue
        await webhooks.queue_delivery(
            session,
            subscription_id=sub.id,
            event_id=event.id,
            event_type=event.type,
            event_time=event.time,
            payload=payload,
        )
