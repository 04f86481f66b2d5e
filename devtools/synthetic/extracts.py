"""Synthetic history as the extract files an ICS's analysts would hand the bulk importer
(docs/integration/bulk.md): the journeys' referrals as an e-RS worklist extract (one line per
step), GP appointments (GPAD-shaped) and A&E attendances (ECDS-shaped). Every person is
invented: NHS numbers come from the 999 range NHS England keeps for test data.
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.synthetic.builder import SyntheticJourney

LONDON = ZoneInfo("Europe/London")

ERS_COLUMNS = (
    "ubrn",
    "nhs_number",
    "referring_org",
    "registered_practice",
    "receiving_org",
    "service_id",
    "specialty",
    "priority",
    "reason_codes",
    "step",
    "step_at",
    "reason",
    "appointment_at",
)
GPAD_COLUMNS = (
    "appointment_id",
    "nhs_number",
    "appointment_date",
    "appointment_time",
    "appt_status",
    "appt_mode",
    "time_between_book_and_appt",
    "urgent",
    "practice_ods",
)
ECDS_COLUMNS = (
    "attendance_id",
    "nhs_number",
    "arrival_date",
    "arrival_time",
    "departure_date",
    "departure_time",
    "attendance_category",
    "chief_complaint",
    "diagnoses",
    "discharge_destination",
    "provider_ods",
    "contact_kind",
)
#: the step names of the e-RS extract for Waymark's referral states
STEP_WORDS = {"submitted": "sent", "did_not_attend": "dna"}
#: a synthetic hold's reason (the referrals service asks for one; the generator gives none)
HOLD_REASON = "awaiting-information"


def nhs_numbers(n: int, *, first_body: int) -> list[str]:
    """n valid NHS numbers of the 999 test range, bodies counted up from `first_body` (after
    999999 they go on from 000000)."""
    out: list[str] = []
    body = first_body
    while len(out) < n:
        digits = f"999{body % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check != 10:
            out.append(digits + str(0 if check == 11 else check))
        body += 1
    return out


def ubrn(referral_id: str) -> str:
    """A 12-digit UBRN made from the synthetic referral's id (stable across runs)."""
    return f"{uuid.UUID(referral_id).int % 10**12:012d}"


def _local(at: str) -> str:
    """An aware ISO time as the extract writes it: with its UTC offset, to the second."""
    return datetime.fromisoformat(at).astimezone(UTC).replace(microsecond=0).isoformat()


def ers_rows(
    journeys: Sequence[SyntheticJourney],
    numbers: Sequence[str],
    *,
    known_services: Collection[str] | None = None,
) -> list[list[str]]:
    """One line per step of every journey's referrals, the lines of one UBRN together. A
    service not in `known_services` (the directory's ids, when given) is written as an e-RS
    service id the directory does not know, so the referral is imported without one."""
    rows: list[list[str]] = []
    for journey, nhs in zip(journeys, numbers, strict=False):
        by_referral: dict[str, list] = {}  # type: ignore[type-arg]
        for e in journey.events:
            by_referral.setdefault(e.referral_id, []).append(e)
        for rid, events in by_referral.items():
            for e in events:
                reason = e.transition_reason or (HOLD_REASON if e.state == "on_hold" else "")
                rows.append(
                    [
                        ubrn(rid),
                        nhs,
                        e.from_org,
                        e.from_org if e.from_org.startswith("GP-") else "",
                        e.to_org,
                        e.to_service_id
                        if known_services is None or e.to_service_id in known_services
                        else f"{uuid.UUID(rid).int % 10**7:07d}",
                        e.service_category,
                        e.priority.capitalize(),
                        ";".join(e.reason_codes),
                        STEP_WORDS.get(e.state, e.state),
                        _local(e.occurred_at),
                        reason,
                        _local(e.appointment_at) if e.appointment_at else "",
                    ]
                )
    return rows


def gpad_rows(
    numbers: Sequence[str],
    *,
    seed: int,
    now: datetime,
    practice: str = "GP-A81001",
    every: int = 4,
    days: float = 365,
) -> list[list[str]]:
    """Planned GP reviews, attended, for every `every`-th person: one to three in the period.
    Planned appointments never count as unplanned contact, so they raise no alert."""
    rng = random.Random(seed)
    rows = []
    for i, nhs in enumerate(numbers):
        if i % every:
            continue
        for k in range(rng.randint(1, 3)):
            at = (now - timedelta(days=rng.uniform(7, days))).astimezone(LONDON)
            at = at.replace(
                hour=rng.choice((9, 10, 11, 14, 15, 16)), minute=rng.choice((0, 20, 40))
            )
            rows.append(
                [
                    f"{practice}-{seed}-{i:05d}-{k}",
                    nhs,
                    at.date().isoformat(),
                    at.strftime("%H:%M"),
                    "Attended",
                    rng.choice(("Face-to-Face", "Telephone")),
                    rng.choice(("8 to 14 Days", "15 to 21 Days", "2 to 7 Days")),
                    "N",
                    practice,
                ]
            )
    return rows


#: chief complaints and diagnoses of the synthetic attendances (SNOMED CT): backache, low back
#: pain, neck pain; discharged home
BACKACHE, LOW_BACK_PAIN, NECK_PAIN, HOME = "161891005", "279039007", "81680005", "306689006"


def ecds_rows(
    numbers: Sequence[str], *, count: int, seed: int, now: datetime, provider: str = "RX1"
) -> list[list[str]]:
    """`count` A&E attendances spread over the last year among `numbers`, in arrival order."""
    rng = random.Random(seed)
    arrivals = sorted(now - timedelta(days=rng.uniform(1, 365)) for _ in range(count))
    rows = []
    for n, arrival in enumerate(arrivals):
        local = arrival.astimezone(LONDON).replace(second=0, microsecond=0)
        leave = local + timedelta(minutes=rng.randint(40, 600))
        rows.append(
            [
                f"{provider}-ED-{seed}-{n:07d}",
                rng.choice(numbers),
                local.date().isoformat(),
                local.strftime("%H:%M"),
                leave.date().isoformat(),
                leave.strftime("%H:%M"),
                "1",
                BACKACHE,
                rng.choice((LOW_BACK_PAIN, NECK_PAIN)),
                HOME,
                provider,
                "",
            ]
        )
    return rows


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        out.writerows(rows)
    return path
