"""The person's contacts with care outside referrals (A&E, NHS 111, out-of-hours, crisis team,
GP, admissions, outpatients) as the timeline shows them: a row of marks per kind of contact
beside the referral lanes, each mark saying in words what it was ("A&E attendance, 3 Feb 2026,
unplanned"), planned and unplanned told apart by shape and fill, cancelled and
entered-in-error contacts left out. The words also go into the timeline's summary and the
page's table, so nothing is told by the picture alone (timeline_contacts_svg.py draws them).

Pure: no I/O, no clock. Input is the contact index's rows (encounters/repository.py's
`Contact`) or dicts with the same keys; malformed entries are skipped, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from services.notifications.dashboard.labels import UK, day_text, parse_time
from services.notifications.encounters import domain
from shared.vocabulary import ContactKind


@dataclass(frozen=True)
class ContactMark:
    """One contact on the timeline."""

    encounter_id: str
    kind: str
    at: datetime
    ended_at: datetime | None
    unplanned: bool
    status: str
    source_org: str

    @property
    def label(self) -> str:
        return domain.kind_label(self.kind)

    @property
    def happened(self) -> bool:
        return domain.happened(self.status)

    @property
    def planning(self) -> str:
        return "unplanned" if self.unplanned else "planned"

    @property
    def status_words(self) -> str:
        return domain.status_words(self.status)

    def title(self, tz: tzinfo = UK) -> str:
        """'A&E attendance, 3 Feb 2026, unplanned'; a contact that has not happened says why
        ('GP appointment, 3 Feb 2026, planned, did not attend')."""
        text = f"{self.label}, {day_text(self.at, tz)}, {self.planning}"
        return text if self.happened else f"{text}, {self.status_words}"


@dataclass(frozen=True)
class ContactLane:
    """The row of one kind of contact."""

    kind: str
    label: str
    marks: tuple[ContactMark, ...]


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _mark(raw: Any) -> ContactMark | None:
    encounter_id = _get(raw, "encounter_id")
    kind = _get(raw, "contact_kind")
    status = _get(raw, "status")
    planned = _get(raw, "planned")
    at = parse_time(_get(raw, "started_at"))
    if not (isinstance(encounter_id, str) and encounter_id and isinstance(kind, str) and kind):
        return None
    if not isinstance(status, str) or not isinstance(planned, bool) or at is None:
        return None
    if not domain.shown(status):
        return None  # cancelled, entered in error, or a status nobody can say in words
    org = _get(raw, "source_org")
    return ContactMark(
        encounter_id=encounter_id,
        kind=kind,
        at=at,
        ended_at=parse_time(_get(raw, "ended_at")),
        unplanned=domain.is_unplanned(kind, planned),
        status=status,
        source_org=org if isinstance(org, str) else "",
    )


def _kind_order(kind: str) -> tuple[int, str]:
    known = domain.kind_of(kind)
    order = list(ContactKind)
    return (order.index(known), kind) if known is not None else (len(order), kind)


def contact_lanes(contacts: Iterable[Any] | None) -> tuple[ContactLane, ...]:
    """A lane per kind of contact shown (in the vocabulary's order, unknown kinds last), its
    marks in time order; one mark per encounter (the first seen, if one came twice)."""
    marks: dict[str, ContactMark] = {}
    for raw in contacts or []:
        mark = _mark(raw)
        if mark is not None and mark.encounter_id not in marks:
            marks[mark.encounter_id] = mark
    by_kind: dict[str, list[ContactMark]] = {}
    for m in marks.values():
        by_kind.setdefault(m.kind, []).append(m)
    return tuple(
        ContactLane(
            kind,
            domain.kind_label(kind),
            tuple(sorted(by_kind[kind], key=lambda m: (m.at, m.encounter_id))),
        )
        for kind in sorted(by_kind, key=_kind_order)
    )


def _plural(label: str, n: int) -> str:
    # "Crisis team contact" reads "crisis team contacts"; "GP", "A&E", "NHS" keep capitals
    words = label[:1].lower() + label[1:] if label[1:2].islower() else label
    return f"{n} {words}{'' if n == 1 else 's'}"


def contacts_summary(lanes: Sequence[ContactLane]) -> str:
    """The contacts in one sentence, for the timeline's description ('' when there are none)."""
    marks = [m for lane in lanes for m in lane.marks]
    if not marks:
        return ""
    unplanned = [m for m in marks if m.happened and m.unplanned]
    planned = [m for m in marks if m.happened and not m.unplanned]
    other = [m for m in marks if not m.happened]
    n = len(marks)
    parts = []
    if unplanned:
        kinds = [
            _plural(lane.label, k)
            for lane in lanes
            if (k := sum(1 for m in lane.marks if m.happened and m.unplanned))
        ]
        parts.append(f"{len(unplanned)} unplanned ({', '.join(kinds)})")
    if planned:
        parts.append(f"{len(planned)} planned")
    if other:
        parts.append(f"{len(other)} booked or missed")
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"{n} contact{'' if n == 1 else 's'} with care outside referrals: {listed}."
