"""The directory's rules: pure and synchronous, no I/O.

Vocabularies (the codes every client sends and every event carries), UK postcode validation,
the publication lifecycle, the checks a service must pass to be published, and opening
times. The Waymark taxonomies, through which Waymark's own fields travel as Open Referral UK
attributes, are in `oruk/taxonomies.py`; the validation of a search is in `search.py`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from typing import Any

from shared.errors import Conflict, ValidationFailed
from shared.vocabulary import Category

# --- vocabularies ---------------------------------------------------------------------------
# These codes are the directory's public contract: API filters, event `category` and
# `conditions`, and the Waymark taxonomy terms in the ORUK feed all use them. Add codes; never
# rename one (consumers, e.g. the referrals service, store them). The categories of service are
# shared/vocabulary.py's `Category` (every part labels them from there).


class Condition(StrEnum):
    """Conditions a service serves; a service for people with both lists both."""

    PERSISTENT_PAIN = "persistent_pain"
    MENTAL_HEALTH = "mental_health"


class DeliveryMode(StrEnum):
    IN_PERSON = "in_person"
    PHONE = "phone"
    VIDEO = "video"
    GROUP = "group"


class CommunicationSupport(StrEnum):
    BSL = "bsl"  # British Sign Language
    INTERPRETERS = "interpreters"
    EASY_READ = "easy_read"
    LEARNING_DISABILITY = "learning_disability"
    DEMENTIA_FRIENDLY = "dementia_friendly"


class ServiceStatus(StrEnum):
    """Open Referral UK's service status (what the provider says about the service)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    DEFUNCT = "defunct"
    TEMPORARILY_CLOSED = "temporarily closed"


class Lifecycle(StrEnum):
    """Waymark's publication state (whether the directory shows the service)."""

    DRAFT = "draft"
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


class WithdrawalReason(StrEnum):
    """Why a service left the directory: a code, so events carry no free text."""

    SERVICE_CLOSED = "service_closed"
    FUNDING_ENDED = "funding_ended"
    MERGED = "merged_into_another_service"
    NOT_ACCEPTING_REFERRALS = "not_accepting_referrals"
    LISTED_IN_ERROR = "listed_in_error"
    OTHER = "other"


class LocationType(StrEnum):
    PHYSICAL = "physical"
    VIRTUAL = "virtual"


class Weekday(StrEnum):
    """iCalendar (RFC 5545) day codes, as ORUK schedules use them in `byday`."""

    MO = "MO"
    TU = "TU"
    WE = "WE"
    TH = "TH"
    FR = "FR"
    SA = "SA"
    SU = "SU"


WEEKDAYS: tuple[Weekday, ...] = tuple(Weekday)
_DAY_NAMES = {
    "monday": "MO",
    "tuesday": "TU",
    "wednesday": "WE",
    "thursday": "TH",
    "friday": "FR",
    "saturday": "SA",
    "sunday": "SU",
}

# statuses under which a published service is shown in search (a temporarily closed service
# is still shown, with its status, so people can wait for it or look elsewhere)
SEARCHABLE_STATUSES: tuple[ServiceStatus, ...] = (
    ServiceStatus.ACTIVE,
    ServiceStatus.TEMPORARILY_CLOSED,
)
REMOTE_MODES = frozenset({DeliveryMode.PHONE, DeliveryMode.VIDEO})


# --- identifiers ------------------------------------------------------------------------------

#: service, location and other record ids: client-chosen slugs (svc-msk-physio) or UUIDs
RECORD_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_RECORD_ID = re.compile(RECORD_ID)

#: the namespace of Waymark's name-based UUIDs (organisations, taxonomies, terms, attributes)
WAYMARK_NS = uuid.UUID("5b0f3c1e-8d1a-4f5e-9a57-7761796d6172")


def is_record_id(value: str) -> bool:
    return bool(_RECORD_ID.fullmatch(value))


def organization_id_for(org_code: str) -> str:
    """A stable id for an organisation registered through the Waymark API (ORUK wants one)."""
    return str(uuid.uuid5(WAYMARK_NS, f"organization/{org_code.upper()}"))


def new_id() -> str:
    return str(uuid.uuid4())


# --- UK postcodes -----------------------------------------------------------------------------
# The shapes of the Royal Mail postcode format (A9 9AA, A99 9AA, A9A 9AA, AA9 9AA, AA99 9AA,
# AA9A 9AA) with the letters each position may hold: Q, V, X never first; I, J, Z never second;
# the inward unit never uses C, I, K, M, O, V.
_OUTWARD = (
    r"(?:[A-PR-UWYZ][0-9]{1,2}|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
)
_INWARD = r"[0-9][ABD-HJLNP-UW-Z]{2}"
_POSTCODE = re.compile(f"{_OUTWARD} {_INWARD}")


def normalise_postcode(raw: str) -> str:
    """'wy1 1aa', 'WY11AA', ' Wy1  1Aa ' -> 'WY1 1AA'; ValidationFailed if not UK-shaped."""
    compact = "".join(raw.split()).upper()
    candidate = f"{compact[:-3]} {compact[-3:]}" if 5 <= len(compact) <= 7 else compact
    if not candidate.isascii() or not _POSTCODE.fullmatch(candidate):
        raise ValidationFailed(
            f"{raw[:20]!r} is not a UK postcode (e.g. 'WY1 2AB': an outward "
            "code of 2-4 characters, a space, a digit and two letters)"
        )
    return candidate


def is_postcode(raw: str) -> bool:
    try:
        normalise_postcode(raw)
    except ValidationFailed:
        return False
    return True


# --- the publication lifecycle ---------------------------------------------------------------

_TRANSITIONS: dict[tuple[Lifecycle, str], Lifecycle] = {
    (Lifecycle.DRAFT, "publish"): Lifecycle.PUBLISHED,
    (Lifecycle.WITHDRAWN, "publish"): Lifecycle.PUBLISHED,  # a provider may bring it back
    (Lifecycle.PUBLISHED, "withdraw"): Lifecycle.WITHDRAWN,
}


def next_lifecycle(current: Lifecycle, action: str) -> Lifecycle:
    try:
        return _TRANSITIONS[(current, action)]
    except KeyError:
        raise Conflict(
            f"a {current.value} service cannot be {action}ed"
            + (" (it was never published)" if current is Lifecycle.DRAFT else ""),
            lifecycle=current.value,
        ) from None


# --- a service's Waymark facts ----------------------------------------------------------------


@dataclass(frozen=True)
class WaymarkFacts:
    """What Waymark adds to an ORUK service, whichever way the service arrived."""

    category: Category
    conditions: tuple[Condition, ...]
    delivery_modes: tuple[DeliveryMode, ...]
    communication_support: tuple[CommunicationSupport, ...] = ()
    self_referral: bool = False
    waiting_weeks: int | None = None

    @property
    def remote(self) -> bool:
        return bool(REMOTE_MODES.intersection(self.delivery_modes))


def unique_sorted(values: Iterable[StrEnum]) -> tuple[Any, ...]:
    """Sets of codes are kept in vocabulary order, once each, so equal sets compare equal."""
    seen = set(values)
    return tuple(v for v in type(next(iter(seen))) if v in seen) if seen else ()


@dataclass(frozen=True)
class PublishCheck:
    """The facts the publication rules look at."""

    facts: WaymarkFacts
    how_to_refer: str | None
    physical_locations_with_coordinates: int
    physical_locations_without_coordinates: int
    minimum_age: int | None = None
    maximum_age: int | None = None


def check_publishable(c: PublishCheck) -> None:
    """A service is shown to professionals only if they can act on it."""
    problems = []
    if not c.facts.conditions:
        problems.append("name at least one condition served")
    if not c.facts.delivery_modes:
        problems.append("name at least one delivery mode")
    if not (c.how_to_refer or "").strip():
        problems.append("say how to refer (how_to_refer / ORUK application_process)")
    if (
        DeliveryMode.IN_PERSON in c.facts.delivery_modes
        and c.physical_locations_with_coordinates == 0
    ):
        problems.append(
            "an in-person service needs a physical location with coordinates or a known postcode"
        )
    if c.physical_locations_without_coordinates:
        problems.append("every physical location needs coordinates or a known postcode")
    if problems:
        raise ValidationFailed(
            "the service cannot be published: " + "; ".join(problems), problems=problems
        )


def check_ages(minimum_age: int | None, maximum_age: int | None) -> None:
    if minimum_age is not None and maximum_age is not None and minimum_age > maximum_age:
        raise ValidationFailed(f"minimum_age {minimum_age} is above maximum_age {maximum_age}")


def free_of_charge(amounts: Iterable[float | None]) -> bool:
    """Free unless a cost option names a positive amount (ORUK: no cost options = free)."""
    return not any(a is not None and a > 0 for a in amounts)


# --- opening times ----------------------------------------------------------------------------
# A service's weekly opening hours are kept as a set of minute-of-week ranges [start, end)
# (Monday 00:00 = 0, Sunday 23:59 = 10079), so "open on Tuesday" and "open Tuesday at 18:30"
# are one range test in the database. Times are UK local wall-clock time.

MINUTES_PER_DAY = 24 * 60


def parse_byday(byday: str | None) -> list[Weekday]:
    """'MO,WE' -> [MO, WE]. Ordinal monthly forms ('2MO', '-1FR') are dropped: such a session
    happens on some Mondays only, so it does not make the service open every Monday."""
    days = []
    for part in (byday or "").split(","):
        token = part.strip().upper()
        if token in Weekday.__members__:
            days.append(Weekday(token))
    return days


def parse_clock(value: str | None) -> time | None:
    """'10:00', '10:00:00', '10:00Z', '10:00:00+01:00' -> 10:00 (offsets are ignored: opening
    times are UK local time). None for absent or unreadable values."""
    if not value:
        return None
    m = re.fullmatch(
        r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?"
        r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?",
        value.strip(),
    )
    if m is None:
        return None
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Opening:
    days: tuple[Weekday, ...]
    opens_at: time | None
    closes_at: time | None
    weekly: bool = True


def opening_ranges(openings: Sequence[Opening]) -> list[tuple[int, int]]:
    """Weekly openings -> merged minute-of-week ranges [start, end). A session with no times
    counts as the whole day; one closing after midnight (22:00-02:00) runs into the next day."""
    ranges = []
    for o in openings:
        if not o.weekly:
            continue
        start = o.opens_at.hour * 60 + o.opens_at.minute if o.opens_at else 0
        end = o.closes_at.hour * 60 + o.closes_at.minute if o.closes_at else MINUTES_PER_DAY
        if end <= start:
            end += MINUTES_PER_DAY
        for d in o.days:
            base = WEEKDAYS.index(d) * MINUTES_PER_DAY
            lo, hi = base + start, base + end
            week = 7 * MINUTES_PER_DAY
            if hi > week:  # Sunday night into Monday morning
                ranges.append((lo, week))
                ranges.append((0, hi - week))
            else:
                ranges.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def multirange_literal(ranges: Sequence[tuple[int, int]]) -> str:
    return "{" + ",".join(f"[{lo},{hi})" for lo, hi in ranges) + "}"


def weekday_code(raw: str) -> Weekday:
    token = raw.strip().lower()
    code = _DAY_NAMES.get(token, token.upper())
    if code not in Weekday.__members__:
        raise ValidationFailed(f"{raw[:12]!r} is not a day of the week (MO..SU or monday..sunday)")
    return Weekday(code)
