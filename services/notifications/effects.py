"""What the notifications consumer does with each event, in the consumer's transaction (the
inbox row and every effect commit together, so a redelivered event changes nothing):

- referral events: the referral index and the referral history (every state change, for the
  ICS leads' overview); one message row per (event, audience) the audience rules name; one
  webhook delivery row per matching partner subscription (none for the demo's synthetic
  population, whose referrals exist only as events: nobody to tell);
- journey alert events: the coordinators' alert inbox and the alert's addressees
  (alerts/effects.py);
- everything else is read and recorded in the inbox but owes nothing (yet).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import audience
from services.notifications.alerts.effects import apply_alert_event
from services.notifications.db import execute
from services.notifications.webhooks.effects import queue_referral_deliveries
from shared.events.care_plans import BreakGlassUsed
from shared.events.envelope import CloudEvent
from shared.events.journeys import AlertEventData
from shared.events.referrals import SYNTHETIC_SOURCE, ReferralEventData, ReferralFlagged
from shared.settings import Settings

logger = logging.getLogger(__name__)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def apply_event(
    *, session: AsyncSession, event: CloudEvent, data: Any, settings: Settings
) -> None:
    if isinstance(data, ReferralEventData):
        await _index_referral(session, event, data)
        await _record_history(session, event, data)
        if event.source == SYNTHETIC_SOURCE:
            return  # made-up people and referrals (`waymark seed`): nobody to tell
        await _queue_messages(session, event, data)
        await queue_referral_deliveries(session, event, data)
    elif isinstance(data, AlertEventData):
        await apply_alert_event(session, event, data, settings)
    elif isinstance(data, BreakGlassUsed):
        await _tell_information_governance(session, event, data, settings)


async def _tell_information_governance(
    session: AsyncSession, event: CloudEvent, data: BreakGlassUsed, settings: Settings
) -> None:
    """A break-glass read reaches the ICS's information governance team inbox, once (the
    consumer's inbox row commits with it). Codes and ids only: the stated reason and who it
    was are in the care plans service's audit log, where the review reads them."""
    ig = settings.ig_org
    until = data.expires_at.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")
    await execute(
        session,
        """
        INSERT INTO inbox_item (id, owner, org, subject, body)
        VALUES (:id, :owner, :org, :subject, :body)""",
        id=f"inb_{uuid.uuid5(uuid.NAMESPACE_URL, f'break-glass/{event.id}').hex}",
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


async def _index_referral(
    session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> None:
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


async def _record_history(
    session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> None:
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


async def _queue_messages(
    session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> None:
    ctx = audience.message_context(data.model_dump(mode="json"))
    for route in audience.routes_for(event.type):
        org = (
            data.to_org if route.audience == audience.Audience.RECEIVING_SERVICE else data.from_org
        )
        await execute(
            session,
            """
            INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                                 referral_id, org, context)
            VALUES (:id, :eid, :etype, :aud, :tpl, :pid, :rid, :org, CAST(:ctx AS JSONB))
            ON CONFLICT (event_id, audience) DO NOTHING""",
            id=new_id("msg"),
            eid=event.id,
            etype=event.type,
            aud=route.audience.value,
            tpl=route.template,
            pid=event.subject,
            rid=data.referral_id,
            org=org,
            ctx=_json(ctx),
        )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
