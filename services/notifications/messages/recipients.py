"""Who a message reaches, how and in which form: the recipients of a referral's message
(the referrer, the receiving team and its mailbox, the person, each carer they allow) from
the owning services' details and staff's own preferences, and those of an alert's message
(alerts/recipients.py) as the sender takes them. The rules are in domain.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from services.notifications.alerts.recipients import AlertRecipient
from services.notifications.messages import domain as rules
from services.notifications.messages.contacts import (
    Contacts,
    DetailsGone,
    ReferralDetails,
    ServiceDetails,
)
from services.notifications.messages.domain import (
    Channel,
    Reach,
    Route,
    StaffPreference,
    Variant,
)


@dataclass
class Recipient:
    key: str  # user:<id> | org:<code> | service:<id> | person | carer:<id>
    reach: Reach
    variant: str = Variant.PLAIN.value
    language: str = "en"
    large_type: bool = False
    quiet: tuple[time | None, time | None] = (None, None)
    inbox_owner: str | None = None
    inbox_org: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # something needed for this recipient could not be fetched now: retry
    unavailable: str | None = None


def staff_preference(row: Any) -> StaffPreference:
    """A staff user's preferences as the sender uses them, from their `preference` row."""
    return StaffPreference(
        channels=tuple(row.channels),
        email=row.email,
        mobile=row.mobile,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        language=row.language,
        variant=row.variant,
    )


def alert_recipient(a: AlertRecipient, *, audience: str, waits: bool) -> Recipient:
    """An alert message's recipient as the sender takes it; `waits`: whether a staff
    member's quiet hours hold it."""
    return Recipient(
        key=a.key,
        reach=a.reach,
        inbox_owner=a.key if a.inbox_org else None,
        inbox_org=a.inbox_org,
        extra={"audience": audience, **a.extra},
        **(
            {
                "variant": a.pref.variant,
                "language": a.pref.language,
                "large_type": a.pref.variant == Variant.LARGE_PRINT,
                "quiet": (a.pref.quiet_start, a.pref.quiet_end) if waits else (None, None),
            }
            if a.pref
            else {}
        ),
    )


async def referral_recipients(
    audience: str,
    referral: ReferralDetails,
    service: ServiceDetails | None,
    service_problem: str | None,
    *,
    contacts: Contacts,
    preference: Callable[[str], Awaitable[StaffPreference]],
) -> tuple[list[Recipient], str | None]:
    """Who a referral's message to `audience` goes to, how and in which form; or why it goes
    to nobody. `preference(key)` gives a staff user's own preferences."""
    if audience == "referrer":
        user = referral.referrer_user
        pref = await preference(rules.staff_key(user, referral.referrer_org))
        return [
            Recipient(
                key=f"user:{user}",
                reach=rules.staff_reach(pref),
                variant=pref.variant,
                language=pref.language,
                large_type=pref.variant == Variant.LARGE_PRINT,
                quiet=(pref.quiet_start, pref.quiet_end),
                inbox_owner=f"user:{user}",
                inbox_org=referral.referrer_org,
                extra={"audience": audience},
            )
        ], None
    if audience == "receiving_service":
        team = Recipient(
            key=f"org:{referral.to_org}",
            reach=Reach((Route(Channel.IN_APP),)),
            inbox_owner=f"org:{referral.to_org}",
            inbox_org=referral.to_org,
            extra={"audience": audience},
        )
        out = [team]
        if service_problem:
            out.append(
                Recipient(
                    key=f"service:{referral.to_service_id}",
                    reach=Reach(()),
                    extra={"audience": audience},
                    unavailable=f"the directory could not be read: {service_problem}",
                )
            )
        elif service is not None and rules.is_email(service.email):
            out.append(
                Recipient(
                    key=f"service:{service.id}",
                    reach=Reach((Route(Channel.EMAIL, service.email),)),
                    extra={"audience": audience},
                )
            )
        return out, None
    if audience == "person":
        contact = await contacts.person(referral.patient_id)
        comm = contact.communication if contact else {}
        reach = rules.person_reach(
            preferred=comm.get("preferred_channel"),
            email=comm.get("email"),
            mobile=comm.get("mobile"),
        )
        if contact is None:
            reach = Reach(
                (),
                "no reachable channel: the person has no care plan "
                "recording an email address or mobile number",
            )
        return [
            Recipient(
                key="person",
                reach=reach,
                variant=rules.person_variant(comm, referral.communication_needs).value,
                language=rules.language_code(comm.get("language")),
                large_type=rules.wants_large_type(comm, referral.communication_needs),
                extra={"audience": audience},
            )
        ], None
    if audience == "carers":
        if not referral.consent_to_carer_sharing:
            return [], (
                "nobody to tell: the person has not consented to sharing with "
                "carers on this referral"
            )
        contact = await contacts.person(referral.patient_id)
        carers = [
            c
            for c in (contact.carers if contact else [])
            if rules.carer_may_be_told(consent_to_carer_sharing=True, may_see=c.may_see)
        ]
        if not carers:
            return [], ("nobody to tell: no carer on the person's plan has been given access")
        return [
            Recipient(
                key=f"carer:{c.id}",
                reach=rules.carer_reach(c.contact),
                extra={"audience": audience, "carer_name": c.name},
            )
            for c in carers
        ], None
    raise DetailsGone(f"no recipients are known for the audience {audience!r}")
