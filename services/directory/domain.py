"""The directory's rules: pure and synchronous, no I/O.

Vocabularies (the codes every client sends and every event carries), UK postcode validation,
the publication lifecycle, the checks a service must pass to be published, the Waymark
taxonomies through which Waymark's own fields travel as Open Referral UK attributes, and the
validation of a search.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from typing import Any

from shared.errors import Conflict, NotFound, ValidationFailed

# --- vocabularies ---------------------------------------------------------------------------
# These codes are the directory's public contract: API filters, event `category` and
# `conditions`, and the Waymark taxonomy terms in the ORUK feed all use them. Add codes; never
# rename one (consumers, e.g. the referrals service, store them).


class Category(StrEnum):
    """What kind of service this is (issue #4)."""

    PAIN_MANAGEMENT_PROGRAMME = "pain_management_programme"
    TALKING_THERAPIES_LTC = "talking_therapies_ltc"  # talking therapies for long-term conditions
    MSK_PHYSIOTHERAPY = "msk_physiotherapy"
    SOCIAL_PRESCRIBING = "social_prescribing"
    PEER_SUPPORT = "peer_support"
    SELF_MANAGEMENT_COURSE = "self_management_course"
    EXERCISE_YOGA = "exercise_yoga"
    VOCATIONAL_REHABILITATION = "vocational_rehabilitation"  # vocational rehabilitation and work
    CARERS_SUPPORT = "carers_support"
    CRISIS = "crisis"


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
ORG_CODE = r"^[A-Za-z0-9-]{1,20}$"

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


# --- Waymark's taxonomies ---------------------------------------------------------------------
# Waymark's own fields travel in the ORUK feed as attributes linking the service to terms of
# these taxonomies (HSDS 3 `attribute`), so an ORUK consumer sees them and an ORUK import can
# carry them. Term descriptions are indexed for search, which is why the condition terms name
# the words people use ("back pain", "low mood").


@dataclass(frozen=True)
class Term:
    code: str
    name: str
    description: str


@dataclass(frozen=True)
class Taxonomy:
    key: str
    name: str
    description: str
    terms: tuple[Term, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return str(uuid.uuid5(WAYMARK_NS, f"taxonomy/{self.key}"))

    def term_id(self, code: str) -> str:
        return str(uuid.uuid5(WAYMARK_NS, f"taxonomy/{self.key}/{code}"))


CATEGORY_TAXONOMY = Taxonomy(
    "service-category",
    "Waymark service category",
    "The kind of community or NHS service, as Waymark groups them.",
    (
        Term(
            "pain_management_programme",
            "Pain management programme",
            "Group or individual programmes to live well with persistent pain.",
        ),
        Term(
            "talking_therapies_ltc",
            "Talking therapies for long-term conditions",
            "NHS Talking Therapies pathways for people with long-term physical conditions.",
        ),
        Term(
            "msk_physiotherapy",
            "MSK physiotherapy",
            "Musculoskeletal physiotherapy for back, neck and joint problems.",
        ),
        Term(
            "social_prescribing",
            "Social prescribing",
            "Link workers connecting people to community groups and practical support.",
        ),
        Term("peer_support", "Peer support", "Groups run by and for people with lived experience."),
        Term(
            "self_management_course",
            "Self-management course",
            "Courses teaching skills to manage a long-term condition.",
        ),
        Term("exercise_yoga", "Exercise and yoga", "Exercise classes, yoga and movement groups."),
        Term(
            "vocational_rehabilitation",
            "Vocational rehabilitation and work",
            "Support to stay in work or return to work, employment advice.",
        ),
        Term("carers_support", "Carers' support", "Support for unpaid carers and families."),
        Term("crisis", "Crisis support", "Urgent help in a mental health crisis."),
    ),
)
CONDITION_TAXONOMY = Taxonomy(
    "condition",
    "Waymark condition served",
    "The conditions a service is for.",
    (
        Term(
            "persistent_pain",
            "Persistent pain",
            "Persistent or chronic pain, including back pain, neck pain and musculoskeletal pain.",
        ),
        Term(
            "mental_health",
            "Mental health",
            "Mental health problems, including low mood, depression, anxiety and stress.",
        ),
    ),
)
DELIVERY_TAXONOMY = Taxonomy(
    "delivery-mode",
    "Waymark delivery mode",
    "How the service is delivered.",
    (
        Term("in_person", "In person", "Face to face at a venue."),
        Term("phone", "By phone", "Sessions over the telephone."),
        Term("video", "By video", "Online video sessions."),
        Term("group", "In a group", "Group sessions."),
    ),
)
COMMUNICATION_TAXONOMY = Taxonomy(
    "communication-support",
    "Waymark communication support",
    "Communication support the service offers.",
    (
        Term("bsl", "British Sign Language", "BSL interpreters or signing staff."),
        Term("interpreters", "Interpreters", "Spoken-language interpreters."),
        Term("easy_read", "Easy read", "Easy read information."),
        Term(
            "learning_disability",
            "Learning disability friendly",
            "Adjustments for people with a learning disability.",
        ),
        Term(
            "dementia_friendly", "Dementia friendly", "Adjustments for people living with dementia."
        ),
    ),
)
REFERRAL_TAXONOMY = Taxonomy(
    "referral",
    "Waymark referral facts",
    "How people reach the service.",
    (
        Term(
            "self_referral",
            "Self-referral accepted",
            "People may refer themselves without a professional.",
        ),
        Term(
            "waiting_weeks",
            "Current waiting time in weeks",
            "The attribute value is the current wait from referral to first contact, in weeks.",
        ),
    ),
)
WAYMARK_TAXONOMIES: tuple[Taxonomy, ...] = (
    CATEGORY_TAXONOMY,
    CONDITION_TAXONOMY,
    DELIVERY_TAXONOMY,
    COMMUNICATION_TAXONOMY,
    REFERRAL_TAXONOMY,
)
_BY_FIELD: dict[str, tuple[Taxonomy, type[StrEnum]]] = {
    "category": (CATEGORY_TAXONOMY, Category),
    "conditions": (CONDITION_TAXONOMY, Condition),
    "delivery_modes": (DELIVERY_TAXONOMY, DeliveryMode),
    "communication_support": (COMMUNICATION_TAXONOMY, CommunicationSupport),
}
# term id -> (taxonomy, code)
WAYMARK_TERMS: dict[str, tuple[Taxonomy, Term]] = {
    t.term_id(term.code): (t, term) for t in WAYMARK_TAXONOMIES for term in t.terms
}
WAYMARK_TAXONOMY_IDS = frozenset(t.id for t in WAYMARK_TAXONOMIES)
LINK_TYPE = "service"


def attribute_id(service_id: str, term_id: str) -> str:
    return str(uuid.uuid5(WAYMARK_NS, f"attribute/{service_id}/{term_id}"))


@dataclass(frozen=True)
class AttributeLink:
    """An ORUK attribute of a service: (id, taxonomy term, value)."""

    id: str
    taxonomy_term_id: str
    value: str | None = None
    link_type: str | None = LINK_TYPE


def attributes_for(service_id: str, facts: WaymarkFacts) -> list[AttributeLink]:
    """Waymark's facts as ORUK attributes (ids derived, so saving twice changes nothing)."""
    links = []

    def link(tax: Taxonomy, code: str, value: str | None = None) -> None:
        term_id = tax.term_id(code)
        links.append(AttributeLink(attribute_id(service_id, term_id), term_id, value))

    link(CATEGORY_TAXONOMY, facts.category.value)
    for c in facts.conditions:
        link(CONDITION_TAXONOMY, c.value)
    for m in facts.delivery_modes:
        link(DELIVERY_TAXONOMY, m.value)
    for s in facts.communication_support:
        link(COMMUNICATION_TAXONOMY, s.value)
    if facts.self_referral:
        link(REFERRAL_TAXONOMY, "self_referral")
    if facts.waiting_weeks is not None:
        link(REFERRAL_TAXONOMY, "waiting_weeks", str(facts.waiting_weeks))
    return links


def facts_from_attributes(links: Iterable[AttributeLink]) -> WaymarkFacts:
    """Read Waymark's facts back out of a service's attributes (an ORUK import)."""
    found: dict[str, list[str]] = {k: [] for k in _BY_FIELD}
    self_referral, waiting = False, None
    for a in links:
        hit = WAYMARK_TERMS.get(a.taxonomy_term_id)
        if hit is None:
            continue
        tax, term = hit
        if tax is REFERRAL_TAXONOMY:
            if term.code == "self_referral":
                self_referral = True
            else:
                waiting = _weeks(a.value)
            continue
        for name, (t, _) in _BY_FIELD.items():
            if t is tax:
                found[name].append(term.code)
    categories = found["category"]
    if len(categories) != 1:
        raise ValidationFailed(
            "a service needs exactly one Waymark service category: an attribute whose "
            f"taxonomy_term_id is a term of taxonomy {CATEGORY_TAXONOMY.id} "
            f"({CATEGORY_TAXONOMY.name}); found {len(categories)}"
        )
    return WaymarkFacts(
        category=Category(categories[0]),
        conditions=unique_sorted(Condition(c) for c in found["conditions"]),
        delivery_modes=unique_sorted(DeliveryMode(m) for m in found["delivery_modes"]),
        communication_support=unique_sorted(
            CommunicationSupport(s) for s in found["communication_support"]
        ),
        self_referral=self_referral,
        waiting_weeks=waiting,
    )


def _weeks(value: str | None) -> int:
    if (
        value is None
        or not value.strip().isdigit()
        or not value.strip().isascii()
        or not 0 <= int(value) <= 520
    ):
        raise ValidationFailed(
            "the waiting time attribute's value must be a whole number of weeks from 0 to 520"
        )
    return int(value)


def is_waymark_term(term_id: str) -> bool:
    return term_id in WAYMARK_TERMS


# --- search -----------------------------------------------------------------------------------


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    DISTANCE = "distance"
    NAME = "name"


MIN_RADIUS_KM, MAX_RADIUS_KM, DEFAULT_RADIUS_KM = 0.1, 100.0, 10.0
MAX_PAGE_SIZE = 100
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class Origin:
    latitude: float
    longitude: float
    postcode: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A validated search: the same object drives the SQL and the response."""

    text: str | None = None
    conditions: tuple[Condition, ...] = ()  # all of
    categories: tuple[Category, ...] = ()  # any of
    delivery_modes: tuple[DeliveryMode, ...] = ()  # any of
    communication_support: tuple[CommunicationSupport, ...] = ()  # all of
    org_codes: tuple[str, ...] = ()  # any of
    self_referral: bool | None = None
    free: bool | None = None
    open_day: Weekday | None = None
    open_at: time | None = None
    age: int | None = None
    origin: Origin | None = None
    radius_km: float = DEFAULT_RADIUS_KM
    include_remote: bool = False
    sort: SortOrder = SortOrder.RELEVANCE
    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def radius_m(self) -> float:
        return self.radius_km * 1000

    def open_minutes(self) -> tuple[int, int] | None:
        """The minute-of-week range the service must be open in (a point or the whole day)."""
        if self.open_day is None:
            return None
        base = WEEKDAYS.index(self.open_day) * MINUTES_PER_DAY
        if self.open_at is None:
            return base, base + MINUTES_PER_DAY
        at = base + self.open_at.hour * 60 + self.open_at.minute
        return at, at + 1


def build_search(
    *,
    text: str | None,
    conditions: Sequence[Condition],
    categories: Sequence[Category],
    delivery_modes: Sequence[DeliveryMode],
    communication_support: Sequence[CommunicationSupport],
    org_codes: Sequence[str] = (),
    self_referral: bool | None = None,
    free: bool | None = None,
    open_day: str | None = None,
    open_at: time | None = None,
    age: int | None = None,
    origin: Origin | None = None,
    radius_km: float | None = None,
    include_remote: bool = False,
    sort: SortOrder | None = None,
    page: int = 1,
    page_size: int = 20,
) -> SearchQuery:
    """Check that the parts of a search make sense together; say plainly when they don't."""
    text = " ".join((text or "").split()) or None
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"search text is at most {MAX_QUERY_CHARS} characters")
    if open_at is not None and open_day is None:
        raise ValidationFailed("open_at needs open_day (the day the service should be open)")
    day = weekday_code(open_day) if open_day is not None else None
    if radius_km is not None:
        if origin is None:
            raise ValidationFailed(
                "radius_km needs a place to measure from: postcode, or latitude and longitude"
            )
        if not MIN_RADIUS_KM <= radius_km <= MAX_RADIUS_KM:
            raise ValidationFailed(
                f"radius_km must be between {MIN_RADIUS_KM} and {MAX_RADIUS_KM} km"
            )
    if include_remote and origin is None:
        raise ValidationFailed("include_remote only applies to a search near a place")
    if sort is None:
        sort = (
            SortOrder.RELEVANCE
            if text
            else SortOrder.DISTANCE
            if origin is not None
            else SortOrder.NAME
        )
    if sort is SortOrder.DISTANCE and origin is None:
        raise ValidationFailed("sort=distance needs a place: postcode, or latitude and longitude")
    if sort is SortOrder.RELEVANCE and not text:
        raise ValidationFailed("sort=relevance needs search text (q)")
    for code in org_codes:
        if not re.fullmatch(ORG_CODE, code):
            raise ValidationFailed(
                "org_code is an organisation code: letters, digits and '-', at most 20"
            )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"page_size must be 1 to {MAX_PAGE_SIZE}")
    return SearchQuery(
        text=text,
        conditions=unique_sorted(conditions),
        categories=unique_sorted(categories),
        delivery_modes=unique_sorted(delivery_modes),
        communication_support=unique_sorted(communication_support),
        org_codes=tuple(sorted({o.upper() for o in org_codes})),
        self_referral=self_referral,
        free=free,
        open_day=day,
        open_at=open_at,
        age=age,
        origin=origin,
        radius_km=radius_km if radius_km is not None else DEFAULT_RADIUS_KM,
        include_remote=include_remote,
        sort=sort,
        page=page,
        page_size=page_size,
    )


def check_coordinates(latitude: float | None, longitude: float | None) -> Origin | None:
    if latitude is None and longitude is None:
        return None
    if latitude is None or longitude is None:
        raise ValidationFailed("give both latitude and longitude, or neither")
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValidationFailed("latitude must be -90..90 and longitude -180..180")
    return Origin(latitude, longitude)


def last_page(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


def check_page_in_range(page: int, total: int, page_size: int) -> None:
    if page > last_page(total, page_size):
        raise NotFound(
            f"page {page} is beyond the last page ({last_page(total, page_size)}) "
            f"of {total} results",
            total_items=total,
            total_pages=last_page(total, page_size),
        )
