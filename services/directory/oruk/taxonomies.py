"""Waymark's taxonomies: pure and synchronous, no I/O.

Waymark's own fields (category, conditions, delivery modes, communication support, referral
facts) travel in the Open Referral UK feed as attributes of the service; this module names
the taxonomies and terms, and turns a service's Waymark facts into attributes and back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from services.directory.domain import (
    WAYMARK_NS,
    Category,
    CommunicationSupport,
    Condition,
    DeliveryMode,
    WaymarkFacts,
    unique_sorted,
)
from shared.errors import ValidationFailed

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
