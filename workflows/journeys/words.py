"""How the journey rules put things in words: UK local dates, exact day counts, plurals, and
a service by its own name. Pure (the time zone is loaded once, at import)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from shared.vocabulary import ALWAYS_UNPLANNED, CONTACT_LABELS, category_words
from workflows.journeys.state import Episode, ts

UK = ZoneInfo("Europe/London")


def category(cat: str) -> str:
    """A category of service as it reads in a sentence ("referred to the crisis service")."""
    return category_words(cat).in_sentence


def service(ep: Episode) -> str:
    """The service by the name the directory gives it; its category when the name is unknown."""
    return ep.service_name or category(ep.category)


def uk_date(value: str | datetime) -> date:
    """The calendar date in England when it happened (a 00:30 BST event is that day, not the
    day before in UTC)."""
    moment = ts(value) if isinstance(value, str) else value
    return moment.astimezone(UK).date()


def day(value: str | datetime) -> str:
    """'5 January 2026': the UK local date."""
    return uk_date(value).strftime("%-d %B %Y")


def days_between(earlier: str | datetime, later: str | datetime) -> int:
    """Calendar days from one UK date to another: a Monday to the Monday two weeks on is 14,
    whatever the times of day."""
    return (uk_date(later) - uk_date(earlier)).days


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 day', '2 days', '1 service', '3 referrals'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


# --- contacts with care outside referrals (rules_contacts.py) ------------------------------------

#: what the person did, to start a sentence
_CONTACT_DID = {
    "ae_attendance": "Attended A&E",
    "nhs_111": "Contacted NHS 111",
    "out_of_hours": "Was seen by the GP out-of-hours service",
    "crisis_team": "Was in contact with the crisis team",
    "gp_appointment": "Had an unplanned GP appointment",
    "admission": "Was admitted to hospital as an emergency",
    "outpatient_appointment": "Had an unplanned outpatient appointment",
}


def contact_label(kind: str, planned: bool = False) -> str:
    """'A&E attendance', 'crisis team contact', 'unplanned GP appointment': a contact as it
    reads in a sentence (the vocabulary's label; "unplanned" where the kind can be either)."""
    known = {k.value: label for k, label in CONTACT_LABELS.items()}
    label = known.get(kind, kind.replace("_", " "))
    first = label.split()[0]
    if not (first.isupper() or first == "A&E"):
        label = label[:1].lower() + label[1:]
    always = {k.value for k in ALWAYS_UNPLANNED}
    return label if kind in always or planned else f"unplanned {label}"


def contact_kinds(contacts: list[tuple[str, bool]]) -> str:
    """'3 A&E attendances and 1 NHS 111 contact', kinds in the order they first appear."""
    labels = [contact_label(kind, planned) for kind, planned in contacts]
    ordered = list(dict.fromkeys(labels))
    return listing([plural(labels.count(x), x) for x in ordered])


def contact_did(kind: str) -> str:
    return _CONTACT_DID.get(kind, f"Had a {contact_label(kind)}")
