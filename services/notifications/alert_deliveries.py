"""Alerts addressed to organisations besides the ICS's coordinators, and escalations to the
duty rota (#15; the rules are in routing.py).

The consumer's side (`queue_alert_deliveries`, in the consumer's transaction with its inbox
row, so a redelivered event queues nothing twice): one message per (event, audience) and one
webhook delivery per matching partner subscription. The dispatcher's side
(`alert_recipients`): who exactly a queued alert message reaches - each addressed
organisation's team inbox and its staff who chose email in their own preferences; the duty
rota's team inbox and its mailbox. Texts carry codes and ids, never a name or NHS number.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import routing
from services.notifications.config import DutyRota
from services.notifications.messages import Channel, Reach, Route, StaffPreference
from shared.events.envelope import CloudEvent
from shared.events.journeys import AlertEventData
from shared.settings import Settings


async def _exec(session: AsyncSession, sql: str, **params: Any) -> Any:
    return await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]


async def queue_alert_deliveries(
    session: AsyncSession, event: CloudEvent, data: AlertEventData
) -> None:
    """What an alert event owes its addressed organisations and the duty rota."""
    orgs = sorted(set(data.recipient_orgs))
    raw = data.model_dump(mode="json")
    for route in routing.alert_routes(event.type, rule=data.rule, recipient_orgs=orgs):
        await _exec(
            session,
            """
            INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                                 referral_id, org, context)
            VALUES (:id, :eid, :etype, :aud, :tpl, :pid, NULL, NULL, CAST(:ctx AS JSONB))
            ON CONFLICT (event_id, audience) DO NOTHING""",
            id=f"msg_{uuid.uuid4().hex}",
            eid=event.id,
            etype=event.type,
            aud=route.audience.value,
            tpl=route.template,
            pid=event.subject,
            ctx=json.dumps(routing.alert_message_context(raw)),
        )
    if not orgs or event.type not in routing.SUBSCRIBABLE_ALERT_TYPES:
        return
    subs = (
        await _exec(
            session,
            """
        SELECT id, org, event_types FROM webhook_subscription
        WHERE deleted_at IS NULL AND org = ANY(:orgs) AND :etype = ANY(event_types)""",
            orgs=orgs,
            etype=event.type,
        )
    ).all()
    payload = routing.alert_partner_payload(event.model_dump(mode="json"))
    for sub in subs:
        if not routing.alert_subscription_matches(
            org=sub.org,
            event_types=list(sub.event_types),
            event_type=event.type,
            recipient_orgs=orgs,
        ):
            continue
        await _exec(
            session,
            """
            INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type,
                                          event_time, payload)
            VALUES (:id, :sub, :eid, :etype, :at, CAST(:payload AS JSONB))
            ON CONFLICT (subscription_id, event_id) DO NOTHING""",
            id=f"msg_{uuid.uuid4().hex}",
            sub=sub.id,
            eid=event.id,
            etype=event.type,
            at=event.time,
            payload=json.dumps(payload, default=str),
        )


# --- the dispatcher's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRecipient:
    key: str  # org:<code> (a team inbox) | user:<preference key> | rota:<code>
    reach: Reach
    inbox_org: str | None = None  # for the in-app inbox: the team's organisation
    pref: StaffPreference | None = None  # a staff user's own (language, form, quiet hours)
    extra: dict[str, Any] = field(default_factory=dict)  # template values of this recipient


Preferences = Callable[[str], Awaitable[list[tuple[str, StaffPreference]]]]


async def alert_recipients(
    *,
    audience: str,
    context: Mapping[str, Any],
    patient_id: str | None,
    settings: Settings,
    rota: DutyRota,
    email_preferences: Preferences,
) -> tuple[list[AlertRecipient], str | None]:
    """Who an alert message reaches, or why nobody. `email_preferences(org)` gives the staff
    of an organisation who chose email, with their preferences (their quiet hours hold it)."""
    if audience == routing.Audience.DUTY_ROTA:
        org = rota.org_code(settings)
        extra = {"rota_name": rota.name, "person_ref": patient_id}
        return [
            AlertRecipient(f"org:{org}", Reach((Route(Channel.IN_APP),)), org, extra=extra),
            AlertRecipient(
                f"rota:{org}",
                Reach((Route(Channel.EMAIL, rota.address(settings)),)),
                extra={"rota_name": rota.name},
            ),
        ], None
    if audience != routing.Audience.ALERT_ORGS:
        return [], f"no recipients are known for the audience {audience!r}"
    orgs = [str(o) for o in context.get("recipient_orgs") or []]
    if not orgs:
        return [], "nobody to tell: the alert names no organisation"
    out: list[AlertRecipient] = []
    for org in orgs:
        # the team's inbox names the person by pseudonymous id (to find their care plan);
        # an email, which leaves Waymark, does not
        out.append(
            AlertRecipient(
                f"org:{org}",
                Reach((Route(Channel.IN_APP),)),
                org,
                extra={"org": org, "person_ref": patient_id},
            )
        )
        for user_key, pref in await email_preferences(org):
            assert pref.email is not None
            out.append(
                AlertRecipient(
                    f"user:{user_key}",
                    Reach((Route(Channel.EMAIL, pref.email),)),
                    pref=pref,
                    extra={"org": org},
                )
            )
    return out, None
