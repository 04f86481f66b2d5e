"""Who an alert message reaches (the dispatcher's side of #15; the rules are in
audience.py): each addressed organisation's team inbox and its staff who chose email in their
own preferences; the duty rota's team inbox and its mailbox. Texts carry codes and ids, never
a name or NHS number. The consumer's side, what an alert event queues, is in effects.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.notifications.audience import Audience
from services.notifications.config import DutyRota
from services.notifications.messages.domain import Channel, Reach, Route, StaffPreference
from shared.settings import Settings


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
    if audience == Audience.DUTY_ROTA:
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
    if audience != Audience.ALERT_ORGS:
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
