"""The rules about contacts with care (shared/vocabulary.py's contact kinds and statuses):
which happened, which were unplanned, which are shown at all. Pure: no I/O, no clock."""

from __future__ import annotations

from shared.vocabulary import (
    ALWAYS_UNPLANNED,
    CONTACT_LABELS,
    HAPPENED_STATUSES,
    ContactKind,
    ContactStatus,
)

#: statuses whose contact is not shown or counted anywhere: it did not take place as recorded
#: (cancelled) or was never true (entered in error, e.g. HL7 v2 A11)
HIDDEN_STATUSES: frozenset[ContactStatus] = frozenset(
    {ContactStatus.CANCELLED, ContactStatus.ENTERED_IN_ERROR}
)
#: what a status means in words (beside the kind and the day; a contact that happened needs none)
STATUS_WORDS: dict[ContactStatus, str] = {
    ContactStatus.BOOKED: "booked",
    ContactStatus.ARRIVED: "arrived",
    ContactStatus.IN_PROGRESS: "in progress",
    ContactStatus.FINISHED: "finished",
    ContactStatus.CANCELLED: "cancelled",
    ContactStatus.DID_NOT_ATTEND: "did not attend",
    ContactStatus.ENTERED_IN_ERROR: "entered in error",
}


def kind_of(code: str) -> ContactKind | None:
    try:
        return ContactKind(code)
    except ValueError:
        return None


def status_of(code: str) -> ContactStatus | None:
    try:
        return ContactStatus(code)
    except ValueError:
        return None


def happened(status: str) -> bool:
    """The contact took place (arrived, in progress, finished)."""
    known = status_of(status)
    return known is not None and known in HAPPENED_STATUSES


def is_unplanned(kind: str, planned: bool) -> bool:
    """Unplanned when the source says so, and an A&E, NHS 111, out-of-hours or crisis contact
    whatever the source says (the vocabulary's ALWAYS_UNPLANNED)."""
    known = kind_of(kind)
    return not planned or (known is not None and known in ALWAYS_UNPLANNED)


def counts_as_unplanned(kind: str, planned: bool, status: str) -> bool:
    """What the overview counts and the journey rules count: an unplanned contact that
    happened (a cancelled, booked or missed one never counts)."""
    return happened(status) and is_unplanned(kind, planned)


def shown(status: str) -> bool:
    """Whether the timeline shows the contact: not when cancelled or entered in error; a
    status this vocabulary does not know is not shown either (it cannot be said in words)."""
    known = status_of(status)
    return known is not None and known not in HIDDEN_STATUSES


def kind_label(kind: str) -> str:
    """The kind in words (shared/vocabulary.py's CONTACT_LABELS); an unknown code as itself."""
    known = kind_of(kind)
    if known is not None:
        return CONTACT_LABELS[known]
    plain = kind.replace("_", " ").strip()
    return plain[:1].upper() + plain[1:] if plain else "Contact"


def status_words(status: str) -> str:
    known = status_of(status)
    return STATUS_WORDS[known] if known is not None else status.replace("_", " ")
