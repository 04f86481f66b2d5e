"""The rules of people's messages: pure and synchronous, no I/O.

- which channel reaches a recipient (the person: their care plan's preferred channel if that
  contact exists; staff: their own preference, the in-app inbox needing no address; carers:
  only with the person's consent and some access on the plan, by the contact they gave);
- which form a person gets (plain, easy read, large print) from their recorded needs;
- quiet hours, which hold email and SMS (never the in-app inbox) until the window ends;
- retries, and what a message's status is once each recipient's outcome is known;
- the words a template may use, made from codes and the details fetched at send time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class Variant(StrEnum):
    PLAIN = "plain"
    EASY_READ = "easy_read"
    LARGE_PRINT = "large_print"


#: channels that reach a phone or a mailbox, and so wait out quiet hours
HOLDABLE = frozenset({Channel.EMAIL, Channel.SMS})

# --- addresses ----------------------------------------------------------------------------------

# the practical subset of RFC 5322 addresses (no quoted local parts, no IP literals)
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
# UK mobile numbers are 07 followed by nine digits (Ofcom's numbering plan)
_UK_MOBILE = re.compile(r"^(?:\+447|00447|447|07)(\d{9})$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")


def is_email(value: str | None) -> bool:
    if not value or len(value) > 254:
        return False
    return bool(_EMAIL.match(value.strip())) and ".." not in value


def uk_mobile(value: str | None) -> str | None:
    """A UK mobile number in the international form GOV.UK Notify takes (+447...), or None
    when the text is not one."""
    if not value:
        return None
    m = _UK_MOBILE.match(_PHONE_PUNCTUATION.sub("", value.strip()))
    return f"+447{m.group(1)}" if m else None


# --- recipients and their channels --------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One way to reach a recipient: a channel and, for email and SMS, the address."""

    channel: Channel
    address: str | None = None


@dataclass(frozen=True)
class Reach:
    """The ways to reach a recipient, best first; none means unreachable, and `reason` says
    why in words fit for the delivery log (never the contact details themselves)."""

    routes: tuple[Route, ...]
    reason: str = ""

    @property
    def reachable(self) -> bool:
        return bool(self.routes)


def person_reach(*, preferred: str | None, email: str | None, mobile: str | None) -> Reach:
    """The person: their preferred channel if they gave that contact, then the other one."""
    mail = email if is_email(email) else None
    phone = uk_mobile(mobile)
    routes: list[Route] = []
    if preferred == "sms" and phone:
        routes.append(Route(Channel.SMS, phone))
    if preferred == "email" and mail:
        routes.append(Route(Channel.EMAIL, mail))
    if mail and Route(Channel.EMAIL, mail) not in routes:
        routes.append(Route(Channel.EMAIL, mail))
    if phone and Route(Channel.SMS, phone) not in routes:
        routes.append(Route(Channel.SMS, phone))
    if routes:
        return Reach(tuple(routes))
    said = f" (preferred channel: {preferred})" if preferred else ""
    return Reach(
        (),
        "no reachable channel: the person's care plan records no email address "
        f"or mobile number{said}",
    )


@dataclass(frozen=True)
class StaffPreference:
    """A staff user's own choices (the `preference` table)."""

    channels: tuple[str, ...] = (Channel.IN_APP.value,)
    email: str | None = None
    mobile: str | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    language: str = "en"
    variant: str = Variant.PLAIN.value


def staff_key(identity: str, org: str) -> str:
    """Whose preferences these are: a user (issuer + subject) acting for an organisation. The
    same subject signed in for another organisation is another key, so nobody can redirect
    another organisation's messages by reusing a user id."""
    return f"{identity}#{org}"


DEFAULT_STAFF_PREFERENCE = StaffPreference()


def staff_reach(pref: StaffPreference | None) -> Reach:
    """A staff user, in their order of channels. Their addresses were checked when they set
    them; the provider has the last word (a refused number fails visibly)."""
    pref = pref or DEFAULT_STAFF_PREFERENCE
    routes: list[Route] = []
    missing: list[str] = []
    for name in pref.channels:
        if name == Channel.IN_APP:
            routes.append(Route(Channel.IN_APP))
        elif name == Channel.EMAIL:
            (
                routes.append(Route(Channel.EMAIL, pref.email))
                if pref.email
                else missing.append("email (no address set)")
            )
        elif name == Channel.SMS:
            (
                routes.append(Route(Channel.SMS, pref.mobile))
                if pref.mobile
                else missing.append("sms (no mobile number set)")
            )
    if routes:
        return Reach(tuple(routes))
    return Reach(
        (),
        f"no reachable channel: the user's preferences name {', '.join(missing) or 'no channel'}",
    )


def carer_may_be_told(*, consent_to_carer_sharing: bool, may_see: Sequence[str]) -> bool:
    """A carer hears about the person only if the person consented to sharing with carers
    and named this carer on their plan with some access."""
    return consent_to_carer_sharing and bool(may_see)


def carer_reach(contact: str | None) -> Reach:
    """A carer's contact is free text on the plan: an email address or a UK mobile number
    reaches them; anything else (a landline, a postal address) does not, and says so."""
    text = (contact or "").strip()
    if is_email(text):
        return Reach((Route(Channel.EMAIL, text),))
    phone = uk_mobile(text)
    if phone:
        return Reach((Route(Channel.SMS, phone),))
    return Reach(
        (),
        "no reachable channel: the carer's contact on the plan is neither an "
        "email address nor a UK mobile number",
    )


# --- the form of a message ------------------------------------------------------------------

_EASY_READ_WORDS = ("easy read", "easy-read", "easy_read", "learning disab", "dementia")
_LARGE_PRINT_WORDS = (
    "large print",
    "large-print",
    "large_print",
    "visual impair",
    "partially sighted",
)


def person_variant(
    communication: Mapping[str, Any] | None, needs_text: Iterable[str] = ()
) -> Variant:
    """Easy read for a person whose plan says easy read, a learning disability or dementia
    (NHS Accessible Information Standard; Mencap and the Alzheimer's Society both advise
    short plain sentences); large print if the plan says so; otherwise plain. The referral's
    free-text communication needs count too (the plan may not exist yet)."""
    c = communication or {}
    text = " ".join(n.lower() for n in needs_text)
    if (
        c.get("easy_read")
        or c.get("learning_disability")
        or c.get("dementia")
        or any(w in text for w in _EASY_READ_WORDS)
    ):
        return Variant.EASY_READ
    if c.get("large_print") or any(w in text for w in _LARGE_PRINT_WORDS):
        return Variant.LARGE_PRINT
    return Variant.PLAIN


def wants_large_type(
    communication: Mapping[str, Any] | None, needs_text: Iterable[str] = ()
) -> bool:
    """Large type in the email's HTML part (also with easy read words, when both are asked)."""
    text = " ".join(n.lower() for n in needs_text)
    return bool((communication or {}).get("large_print")) or any(
        w in text for w in _LARGE_PRINT_WORDS
    )


#: language names people write on plans -> ISO 639-1 codes (the UK's most spoken, ONS 2021)
LANGUAGE_CODES: Mapping[str, str] = {
    "english": "en",
    "welsh": "cy",
    "cymraeg": "cy",
    "polish": "pl",
    "romanian": "ro",
    "panjabi": "pa",
    "punjabi": "pa",
    "urdu": "ur",
    "portuguese": "pt",
    "spanish": "es",
    "arabic": "ar",
    "bengali": "bn",
    "bangla": "bn",
    "gujarati": "gu",
    "italian": "it",
    "french": "fr",
    "chinese": "zh",
    "mandarin": "zh",
    "cantonese": "zh",
    "lithuanian": "lt",
    "tamil": "ta",
    "turkish": "tr",
    "somali": "so",
    "farsi": "fa",
    "persian": "fa",
    "ukrainian": "uk",
    "russian": "ru",
    "bulgarian": "bg",
    "hungarian": "hu",
    "kurdish": "ku",
    "pashto": "ps",
    "tigrinya": "ti",
    "scottish gaelic": "gd",
    "gaelic": "gd",
}
_LANG_CODE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z]{2})?$")


def language_code(text: str | None) -> str:
    """The ISO code of a language as written on a plan ("Polish", "pl", "Welsh"); English
    when nothing usable is recorded."""
    if not text:
        return "en"
    t = text.strip()
    if _LANG_CODE.match(t):
        return t.split("-")[0].lower()
    return LANGUAGE_CODES.get(t.lower(), "en")


# --- quiet hours ------------------------------------------------------------------------------


def quiet_until(now: datetime, start: time | None, end: time | None, zone: str) -> datetime | None:
    """When the quiet window around `now` ends (in UTC), or None if `now` is outside it.

    Start and end are local wall-clock times; a window may cross midnight (22:00-07:00).
    The start is inclusive, the end exclusive; equal start and end is no window at all."""
    if start is None or end is None or start == end:
        return None
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        if start <= t < end:
            return _at(today, end, tz)
        return None
    # crosses midnight: quiet from start to midnight, and from midnight to end
    if t >= start:
        return _at(today + timedelta(days=1), end, tz)
    if t < end:
        return _at(today, end, tz)
    return None


def _at(day: date, t: time, tz: ZoneInfo) -> datetime:
    # a wall-clock time skipped by the spring change resolves forward (fold=0) - still later
    return datetime.combine(day, t.replace(tzinfo=None), tzinfo=tz).astimezone(UTC)


def is_held(channel: Channel, held_until: datetime | None) -> bool:
    """In-app messages are never held: they wait in the inbox without waking anyone."""
    return held_until is not None and channel in HOLDABLE


# --- retries and status -----------------------------------------------------------------------


def retry_delay(failures: int, delays: Sequence[float]) -> float | None:
    """Seconds before the next try after the `failures`-th transient failure; None once the
    schedule is spent (the recipient then shows as failed)."""
    if failures < 1 or failures > len(delays):
        return None
    return float(delays[failures - 1])


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # final for this recipient
    RETRYING = "retrying"  # a transient failure, tried again later
    HELD = "held"  # quiet hours


@dataclass(frozen=True)
class RecipientOutcome:
    recipient: str
    outcome: Outcome
    next_at: datetime | None = None  # when to try again (retrying, held)
    error: str | None = None


@dataclass(frozen=True)
class MessageStatus:
    status: str  # pending | held | sent | partly_sent | failed | skipped
    next_attempt_at: datetime | None = None
    errors: list[str] = field(default_factory=list)


def message_status(outcomes: Sequence[RecipientOutcome]) -> MessageStatus:
    """A message is done when every recipient is sent or failed: sent if all were reached,
    partly sent if some were, failed if none. Until then it waits for the earliest retry or
    end of quiet hours (held only when every open recipient is in quiet hours)."""
    errors = [
        f"{o.recipient}: {o.error}"
        for o in outcomes
        if o.error and o.outcome in (Outcome.FAILED, Outcome.RETRYING)
    ]
    if not outcomes:
        return MessageStatus("skipped")
    open_ = [o for o in outcomes if o.outcome in (Outcome.RETRYING, Outcome.HELD)]
    if open_:
        times = [o.next_at for o in open_ if o.next_at is not None]
        status = "held" if all(o.outcome is Outcome.HELD for o in open_) else "pending"
        return MessageStatus(status, min(times) if times else None, errors)
    sent = sum(o.outcome is Outcome.SENT for o in outcomes)
    if sent == len(outcomes):
        return MessageStatus("sent", None, errors)
    return MessageStatus("partly_sent" if sent else "failed", None, errors)


def withheld(template: str, context: Mapping[str, Any]) -> str | None:
    """Why a message must not go at all, or None. A discharge because the person died is
    never announced to them or their carers by an automatic message."""
    if template == "discharged" and context.get("transition_reason") == "deceased":
        return "not sent: an automatic message is never sent about a person's death"
    return None


# --- what templates may say -------------------------------------------------------------------

#: coded reasons in words a referrer (and a person) understands
REASON_TEXT: Mapping[str, str] = {
    "not-appropriate-for-service": "the service is not the right one for this need",
    "does-not-meet-criteria": "the referral does not meet the service's criteria",
    "service-unavailable": "the service is not available",
    "duplicate-referral": "the person has already been referred",
    "insufficient-information": "the service needs more information",
    "patient-declined": "the person declined",
    "advice-and-guidance-given": "the service has given advice and guidance",
    "refer-elsewhere": "another service would suit the person better",
    "manage-in-primary-care": "the service advises managing this in primary care",
    "treatment-completed": "treatment is complete",
    "goals-met": "the goals have been met",
    "self-management": "the person will manage on their own, with support to hand",
    "onward-referral": "the person has been referred on to another service",
    "patient-declined-further-care": "the person chose not to have more care",
    "did-not-attend-discharged": "the person did not come to their appointments",
    "moved-away": "the person has moved away",
    "deceased": "the person has died",
}

FLAG_TEXT: Mapping[str, str] = {
    "service_withdrawn": "the service has been withdrawn from the directory",
}


def appointment_words(at: datetime, zone: str) -> dict[str, str]:
    """An appointment as people read it: "Tuesday 3 March 2026" and "2:30pm", UK time
    (easy read guidance: write dates in full, no 24-hour clock)."""
    local = at.astimezone(ZoneInfo(zone))
    hour = local.hour % 12 or 12
    minutes = f":{local.minute:02d}" if local.minute else ""
    when_time = f"{hour}{minutes}{'am' if local.hour < 12 else 'pm'}"
    when_date = f"{local:%A} {local.day} {local:%B %Y}"
    return {
        "appointment_date": when_date,
        "appointment_time": when_time,
        "appointment": f"{when_date} at {when_time}",
    }


def category_words(category: str | None) -> str | None:
    return category.replace("_", " ") if category else None


def template_values(
    *,
    context: Mapping[str, Any],
    referral: Mapping[str, Any],
    service_name: str | None,
    zone: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a template may use. A value that is not known is left out rather than set
    to None, so a template that needs it fails loudly (StrictUndefined) instead of printing
    "None"."""
    values: dict[str, Any] = {}
    # the event's own facts win over what the referral says now (it may have moved on)
    for source in (referral, context):
        for k, v in source.items():
            if v is not None and v != "" and v != []:
                values[k] = v
    rid = values.get("referral_id")
    if rid:
        values["referral_ref"] = str(rid)[:8].upper()
    at = values.get("appointment_at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            at = None
    if isinstance(at, datetime) and at.tzinfo is not None:
        values.update(appointment_words(at, zone))
    service = service_name or category_words(values.get("service_category"))
    if service:
        values["service"] = service
    reason = values.get("reason_code") or values.get("transition_reason")
    if reason:
        values["reason"] = REASON_TEXT.get(str(reason), str(reason).replace("-", " "))
    if values.get("flag"):
        values["flag_text"] = FLAG_TEXT.get(str(values["flag"]), str(values["flag"]))
    if values.get("note"):
        values["advice"] = values["note"]
    values.update({k: v for k, v in (extra or {}).items() if v is not None})
    return values
