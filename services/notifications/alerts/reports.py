"""The alert inbox's report for ICS leads (the dashboard's overview): loops and stalls per
1,000 referrals (overall, by service category, by calendar month) and the median days from
referral to triage and to treatment.

What the figures mean, so the page can say it in words:

- **Referrals** are the referrals first submitted in the window: the calendar months (UK time)
  from the first day of the month `months - 1` before the current one up to `now`. A referral
  counts once, in the month of its first submission, under the category it was submitted to.
- **Loops and stalls** are the journey alerts of kind `looping` and `stalled` in the ICS's
  inbox, whatever their status now (resolved ones too: they were raised). Each counts against
  the referral it started from, the earliest-submitted referral it names: that referral's
  category and month. So a rate is "alerts arising from the referrals made then, per 1,000 of
  those referrals" (a cohort rate): the latest months are still maturing, since a stall needs
  its deadline to pass. An alert whose referrals have no submission on record (consumed before
  the referral history existed) is counted in `unattributed_alerts` and in no rate.
- **Days to triage** run from a referral's first submission to its first triage decision
  (accepted, rejected or returned); **days to treatment** to its first attendance. Referrals not
  yet triaged (or seen) by `now` have no figure yet; each median says how many referrals it is
  based on (`n`).

Referral counts are the deployment's own: one deployment serves one ICS (settings.ics), and
referral events carry no ICS. The pure helpers (median, rates, UK months) come first; the two
queries read the notifications schema's own tables (referral_history, alert) in the caller's
session. The dashboard's overview page shows these figures.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute

UK = ZoneInfo("Europe/London")
LOOPING, STALLED = "looping", "stalled"
TRIAGE_DECISIONS = ("accepted", "rejected", "returned")
TREATMENT = "attended"
SECONDS_PER_DAY = 86400.0


# --- the figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """Loops and stalls against the referrals of one group (all, a category or a month)."""

    key: str  # "all", the service category code, or the month as "YYYY-MM"
    referrals: int
    loops: int
    stalls: int
    loops_per_1000: float | None  # None: no referrals to measure against
    stalls_per_1000: float | None
    month: date | None = None  # the first day of the month, for the rows by month


@dataclass(frozen=True)
class Median:
    """A median number of days, and how many referrals it is based on."""

    days: float | None  # None when n == 0
    n: int


@dataclass(frozen=True)
class Overview:
    ics: str
    start: datetime  # the window: the first UK month's first midnight ...
    end: datetime  # ... up to now (both timezone-aware)
    months: tuple[date, ...]  # the first day of each calendar month in the window, in order
    overall: Rates
    by_category: tuple[Rates, ...]  # by category code
    by_month: tuple[Rates, ...]  # one per month of the window, empty months included
    to_triage: Median
    to_treatment: Median
    unattributed_alerts: int

    @property
    def referrals(self) -> int:
        return self.overall.referrals


@dataclass(frozen=True)
class CohortReferral:
    """A referral first submitted in the window, with when it was first triaged and seen."""

    referral_id: str
    submitted_at: datetime
    category: str
    triaged_at: datetime | None = None
    treated_at: datetime | None = None


@dataclass(frozen=True)
class CountedAlert:
    """A loop or stall alert, with the submission of the referral it started from (None when
    none is on record)."""

    alert_id: str
    kind: str
    submitted_at: datetime | None
    category: str | None


# --- pure helpers -------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float | None:
    """The median, or None for no values."""
    ordered = sorted(values)
    return statistics.median(ordered) if ordered else None


def per_thousand(count: int, referrals: int) -> float | None:
    """`count` per 1,000 referrals; None when there are no referrals (not zero: unknown)."""
    if count < 0 or referrals < 0:
        raise ValueError("counts cannot be negative")
    return count * 1000 / referrals if referrals else None


def days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / SECONDS_PER_DAY


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no timezone")
    return at


def uk_month(at: datetime) -> date:
    """The first day of the UK calendar month `at` falls in (so 23:30 UTC on 31 May in summer
    time is 1 June)."""
    return _aware(at).astimezone(UK).date().replace(day=1)


def month_key(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def _add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def window(now: datetime, months: int) -> tuple[datetime, tuple[date, ...]]:
    """The window's start (midnight UK time on the first day of its first month, as UTC) and
    its calendar months, the last being the month of `now`."""
    if months < 1:
        raise ValueError("the window needs at least one month")
    last = uk_month(now)
    firsts = tuple(_add_months(last, i - months + 1) for i in range(months))
    start = datetime(firsts[0].year, firsts[0].month, 1, tzinfo=UK).astimezone(UTC)
    return start, firsts


def _rates(key: str, referrals: int, loops: int, stalls: int, month: date | None = None) -> Rates:
    return Rates(
        key=key,
        referrals=referrals,
        loops=loops,
        stalls=stalls,
        loops_per_1000=per_thousand(loops, referrals),
        stalls_per_1000=per_thousand(stalls, referrals),
        month=month,
    )


def summarise(
    *,
    ics: str,
    start: datetime,
    end: datetime,
    months: Sequence[date],
    cohort: Sequence[CohortReferral],
    alerts: Sequence[CountedAlert],
) -> Overview:
    """The overview from the window's referrals and the ICS's loop and stall alerts. An alert
    whose first referral was submitted outside the window counts nowhere; one with none on
    record counts as unattributed (the query passes only those raised in the window)."""
    counted = [a for a in alerts if a.submitted_at is not None and start <= a.submitted_at < end]
    refs_by_cat = Counter(r.category for r in cohort)
    refs_by_month = Counter(uk_month(r.submitted_at) for r in cohort)
    by_cat: dict[str, Counter[str]] = {LOOPING: Counter(), STALLED: Counter()}
    by_month: dict[str, Counter[date]] = {LOOPING: Counter(), STALLED: Counter()}
    for a in counted:
        if a.kind in by_cat and a.submitted_at is not None:
            by_cat[a.kind][a.category or "unknown"] += 1
            by_month[a.kind][uk_month(a.submitted_at)] += 1
    categories = sorted(set(refs_by_cat) | set(by_cat[LOOPING]) | set(by_cat[STALLED]))
    triage = [days_between(r.submitted_at, r.triaged_at) for r in cohort if r.triaged_at]
    treatment = [days_between(r.submitted_at, r.treated_at) for r in cohort if r.treated_at]
    return Overview(
        ics=ics,
        start=start,
        end=end,
        months=tuple(months),
        overall=_rates(
            "all", len(cohort), sum(by_cat[LOOPING].values()), sum(by_cat[STALLED].values())
        ),
        by_category=tuple(
            _rates(c, refs_by_cat[c], by_cat[LOOPING][c], by_cat[STALLED][c]) for c in categories
        ),
        by_month=tuple(
            _rates(
                month_key(m), refs_by_month[m], by_month[LOOPING][m], by_month[STALLED][m], month=m
            )
            for m in months
        ),
        to_triage=Median(median(triage), len(triage)),
        to_treatment=Median(median(treatment), len(treatment)),
        unattributed_alerts=sum(1 for a in alerts if a.submitted_at is None),
    )


# --- the queries --------------------------------------------------------------------------------

# each referral's first submission in the window, with its first triage decision and first
# attendance after it (and not after `end`, so a past `now` sees the past)
_COHORT = """
    SELECT h.referral_id, h.at AS submitted_at, h.service_category AS category,
           (SELECT min(t.at) FROM referral_history t
             WHERE t.referral_id = h.referral_id AND t.state = ANY(:decisions)
               AND t.at >= h.at AND t.at <= :end) AS triaged_at,
           (SELECT min(t.at) FROM referral_history t
             WHERE t.referral_id = h.referral_id AND t.state = :treatment
               AND t.at >= h.at AND t.at <= :end) AS treated_at
    FROM referral_history h
    WHERE h.state = 'submitted' AND h.at >= :start AND h.at < :end
      AND NOT EXISTS (SELECT 1 FROM referral_history e
                       WHERE e.referral_id = h.referral_id AND e.state = 'submitted'
                         AND (e.at, e.event_id) < (h.at, h.event_id))"""

# the ICS's loop and stall alerts with the first submission among the referrals each names:
# those whose first referral was submitted in the window, and those with none on record raised
# in the window
_ALERTS = """
    SELECT a.alert_id, a.kind, f.at AS submitted_at, f.service_category AS category
    FROM alert a
    LEFT JOIN LATERAL (
        SELECT h.at, h.service_category FROM referral_history h
        WHERE h.referral_id = ANY(a.referral_ids) AND h.state = 'submitted'
        ORDER BY h.at, h.event_id LIMIT 1) f ON true
    WHERE a.ics = :ics AND a.kind = ANY(:kinds) AND a.raised_at < :end
      AND ((f.at >= :start AND f.at < :end)
           OR (f.at IS NULL AND a.raised_at >= :start))"""


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    return list((await execute(session, sql, **params)).all())


async def overview(
    session: AsyncSession, *, ics: str, months: int = 12, now: datetime | None = None
) -> Overview:
    """The overview of `ics` over the last `months` calendar months (UK time) up to `now`."""
    end = _aware(now or datetime.now(UTC)).astimezone(UTC)
    start, firsts = window(end, months)
    cohort = [
        CohortReferral(r.referral_id, r.submitted_at, r.category, r.triaged_at, r.treated_at)
        for r in await _rows(
            session,
            _COHORT,
            start=start,
            end=end,
            decisions=list(TRIAGE_DECISIONS),
            treatment=TREATMENT,
        )
    ]
    alerts = [
        CountedAlert(r.alert_id, r.kind, r.submitted_at, r.category)
        for r in await _rows(
            session, _ALERTS, ics=ics, start=start, end=end, kinds=[LOOPING, STALLED]
        )
    ]
    return summarise(ics=ics, start=start, end=end, months=firsts, cohort=cohort, alerts=alerts)
