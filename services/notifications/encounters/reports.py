"""Unplanned contacts per 1,000 people, for the ICS leads' overview (the dashboard's overview
page shows these figures beside the loops and stalls of alerts/reports.py).

What the figures mean, so the page can say it in words:

- **The period** is the last `days` days up to `now` (182 by default: six months, the window
  of the report Waymark serves, "66% of people attending A&E with pain had more than three
  contacts in the previous six months"; configuration: `WAYMARK_CONTACT_FIGURES_*`).
- **Unplanned contacts** are contacts that happened (arrived, in progress, finished) and
  started in the period, that the source called unplanned or whose kind always is (A&E, NHS
  111, out-of-hours, crisis team): encounters/domain.py. Cancelled, entered-in-error, booked
  and missed contacts never count. Each contact counts once, at its latest revision.
- **People** (the denominator) are the people this deployment knows had a journey in the
  period: a referral open at some time in it (an event in the period, or open when it began)
  or a contact that happened in it. It is not the ICS's registered population, and it
  includes people whose only contact was unplanned: a rate near or above 1,000 means the
  deployment hears mostly of people who attend urgent care, not that everyone attends it.
- **Frequent** people had more than `frequent_above` unplanned contacts in the period (3 by
  default, the report's figure); their share is of the people with any unplanned contact.

One deployment serves one ICS and neither referral nor encounter events carry an ICS, so the
figures are the deployment's own. Contacts consumed before the contact index existed are not
counted. The pure summary comes first; the two queries read the notifications schema's own
tables (contact_index, referral_history) in the caller's session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute
from services.notifications.encounters.domain import kind_label
from shared.vocabulary import (
    ALWAYS_UNPLANNED,
    ENDED_STATES,
    HAPPENED_STATUSES,
    ContactKind,
)


@dataclass(frozen=True)
class PersonContacts:
    """How many unplanned contacts of one kind one person had in the period."""

    patient_id: str
    kind: str
    contacts: int


@dataclass(frozen=True)
class People:
    """The denominator: the people with a journey in the period, and why they are in it."""

    total: int
    with_referral: int
    with_contact: int


@dataclass(frozen=True)
class KindFigure:
    kind: str
    label: str
    contacts: int
    people: int  # people with at least one of these
    per_1000: float | None


@dataclass(frozen=True)
class ContactFigures:
    start: datetime
    end: datetime
    days: int
    people: People
    unplanned: int
    per_1000: float | None  # None: nobody to measure against (not zero: unknown)
    by_kind: tuple[KindFigure, ...]  # in the vocabulary's order, kinds with contacts only
    people_with_unplanned: int
    frequent_above: int
    frequent_people: int
    frequent_share: float | None  # of people_with_unplanned, as a percentage

    @property
    def empty(self) -> bool:
        return self.people.total == 0


def per_thousand(count: int, people: int) -> float | None:
    """`count` per 1,000 people; None when there are none."""
    if count < 0 or people < 0:
        raise ValueError("counts cannot be negative")
    return count * 1000 / people if people else None


def _kind_order(kind: str) -> tuple[int, str]:
    order = list(ContactKind)
    try:
        return order.index(ContactKind(kind)), kind
    except ValueError:
        return len(order), kind


def summarise(
    *,
    start: datetime,
    end: datetime,
    people: People,
    counts: Sequence[PersonContacts],
    frequent_above: int,
) -> ContactFigures:
    """The figures from the period's denominator and each person's unplanned contacts by
    kind. A person with contacts but not in `people` (not possible from the queries, which
    count every person with a contact) would still be counted in the numerator."""
    if end <= start:
        raise ValueError("the period must end after it starts")
    if frequent_above < 0:
        raise ValueError("the frequent threshold cannot be negative")
    per_person: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    people_of_kind: dict[str, set[str]] = {}
    for c in counts:
        if c.contacts < 0:
            raise ValueError("counts cannot be negative")
        if c.contacts == 0:
            continue
        per_person[c.patient_id] += c.contacts
        per_kind[c.kind] += c.contacts
        people_of_kind.setdefault(c.kind, set()).add(c.patient_id)
    total = sum(per_person.values())
    frequent = sum(1 for n in per_person.values() if n > frequent_above)
    return ContactFigures(
        start=start,
        end=end,
        days=round((end - start) / timedelta(days=1)),
        people=people,
        unplanned=total,
        per_1000=per_thousand(total, people.total),
        by_kind=tuple(
            KindFigure(
                k,
                kind_label(k),
                per_kind[k],
                len(people_of_kind[k]),
                per_thousand(per_kind[k], people.total),
            )
            for k in sorted(per_kind, key=_kind_order)
        ),
        people_with_unplanned=len(per_person),
        frequent_above=frequent_above,
        frequent_people=frequent,
        frequent_share=frequent * 100 / len(per_person) if per_person else None,
    )


# --- the queries --------------------------------------------------------------------------------

_HAPPENED = sorted(s.value for s in HAPPENED_STATUSES)
_ALWAYS = sorted(k.value for k in ALWAYS_UNPLANNED)
_ENDED = sorted(s.value for s in ENDED_STATES)

# each person's unplanned contacts that happened in the period, by kind
_COUNTS = """
    SELECT patient_id, contact_kind AS kind, count(*) AS contacts FROM contact_index
    WHERE started_at >= :start AND started_at < :end AND status = ANY(:happened)
      AND (NOT planned OR contact_kind = ANY(:always))
    GROUP BY patient_id, contact_kind"""

# people with a referral open at some time in the period (an event in it, or a last event
# before it that was no ending) or a contact that happened in it
_PEOPLE = """
    WITH referred AS (
        SELECT DISTINCT h.patient_id FROM referral_history h
        WHERE h.at < :end
          AND (h.at >= :start
               OR (h.state <> ALL(:ended)
                   AND NOT EXISTS (SELECT 1 FROM referral_history l
                                    WHERE l.referral_id = h.referral_id
                                      AND l.at > h.at AND l.at < :start)))),
    contacted AS (
        SELECT DISTINCT patient_id FROM contact_index
        WHERE started_at >= :start AND started_at < :end AND status = ANY(:happened))
    SELECT (SELECT count(*) FROM (SELECT patient_id FROM referred
                                  UNION SELECT patient_id FROM contacted) u) AS total,
           (SELECT count(*) FROM referred) AS with_referral,
           (SELECT count(*) FROM contacted) AS with_contact"""


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    return list((await execute(session, sql, **params)).all())


async def unplanned_contacts(
    session: AsyncSession, *, days: int, frequent_above: int, now: datetime | None = None
) -> ContactFigures:
    """The figures for the `days` days up to `now`."""
    if days < 1:
        raise ValueError("the period needs at least one day")
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=days)
    [p] = await _rows(session, _PEOPLE, start=start, end=end, ended=_ENDED, happened=_HAPPENED)
    counts = [
        PersonContacts(r.patient_id, r.kind, r.contacts)
        for r in await _rows(
            session, _COUNTS, start=start, end=end, happened=_HAPPENED, always=_ALWAYS
        )
    ]
    return summarise(
        start=start,
        end=end,
        people=People(p.total, p.with_referral, p.with_contact),
        counts=counts,
        frequent_above=frequent_above,
    )
