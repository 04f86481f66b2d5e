"""The patient's journey as a picture: a swimlane per category of service over time, each
referral a row of segments (the states it was in), ends marked with a shape *and* a text label
(returned, not accepted, cancelled, discharged), re-referrals drawn as labelled arrows, waits
hatched with their length written on them, and today's line. Beside it, the same journey as
rows of a table and a one-paragraph summary (the SVG's description), so nothing is told by
the picture alone.

Pure: no I/O, no clock (the caller passes `now`). Input is the journey query's episodes, as
Temporal's JSON converter returns them (dicts) or as `workflows.journeys.state.Episode`
objects; malformed entries are skipped, never an error. Every piece of text that reaches the
SVG is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

UK = ZoneInfo("Europe/London")

#: the lane titles (the directory's categories of service, in words)
CATEGORY_NAMES: dict[str, str] = {
    "pain_management_programme": "Pain management programme",
    "pain_management": "Pain management",
    "talking_therapies_ltc": "Talking therapies (long-term conditions)",
    "talking_therapies": "Talking therapies",
    "msk_physiotherapy": "MSK physiotherapy",
    "physiotherapy": "Physiotherapy",
    "social_prescribing": "Social prescribing",
    "peer_support": "Peer support",
    "self_management_course": "Self-management course",
    "exercise_yoga": "Exercise and yoga",
    "vocational_rehabilitation": "Vocational rehabilitation",
    "carers_support": "Carers' support",
    "crisis": "Crisis service",
}

#: what each referral state means for the person, in words
STATE_NAMES: dict[str, str] = {
    "draft": "Draft (not sent)",
    "submitted": "Waiting for triage",
    "accepted": "Accepted, waiting to be booked",
    "booked": "Booked",
    "attended": "Attended",
    "did_not_attend": "Did not attend",
    "on_hold": "On hold",
    "rejected": "Not accepted",
    "returned": "Returned to the referrer",
    "discharged": "Discharged",
    "cancelled": "Cancelled",
}

#: the short words written on a segment when it is wide enough
SHORT_NAMES: dict[str, str] = {
    "draft": "Draft",
    "submitted": "Triage wait",
    "accepted": "Booking wait",
    "booked": "Booked",
    "attended": "Attended",
    "did_not_attend": "Did not attend",
    "on_hold": "On hold",
}

#: states in which the person is waiting for a service to act (hatched, their length shown)
WAITS = frozenset({"submitted", "accepted", "on_hold", "did_not_attend"})
#: states that end a referral, and the words at their end marker
ENDINGS: dict[str, str] = {
    "rejected": "Not accepted",
    "returned": "Returned",
    "discharged": "Discharged",
    "cancelled": "Cancelled",
}
#: endings without treatment: the person bounced off the service
BOUNCES = frozenset({"rejected", "returned", "cancelled"})

# layout of the SVG (user units; the SVG scales to its container)
WIDTH = 960
GUTTER = 150  # row labels
RIGHT = 120  # end labels past the last time
TOP = 30  # the "today" label
LANE_HEADER = 22
ROW = 32
BAR = 18
AXIS = 40
CHAR_PX = 6.6  # a generous average glyph width at 12px, to decide whether a label fits
MIN_SPAN = timedelta(minutes=10)  # the shortest stretch of time the picture shows

# colours (NHS identity palette), each shape also outlined in near-black for 3:1 contrast
INK = "#212b32"
GREY = "#4c6272"
PALE = "#f0f4f5"
BLUE = "#005eb8"
GREEN = "#007f3b"
YELLOW = "#ffb81c"
RED = "#d5281b"
PURPLE = "#330072"


def category_label(code: str) -> str:
    return CATEGORY_NAMES.get(code, code.replace("_", " ").capitalize() if code else "Unknown")


def state_label(state: str) -> str:
    return STATE_NAMES.get(state, state.replace("_", " ").capitalize() if state else "Unknown")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (naive means UTC), or None when it isn't one."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def day_text(when: datetime, tz: tzinfo = UK) -> str:
    local = when.astimezone(tz)
    return f"{local.day} {local:%b %Y}"


def when_text(when: datetime, tz: tzinfo = UK) -> str:
    local = when.astimezone(tz)
    return f"{local.day} {local:%b %Y, %H:%M}"


def duration_text(delta: timedelta) -> str:
    """'23 days', '1 day', '5 hours', '12 minutes'."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86400:
        n, unit = seconds // 86400, "day"
    elif seconds >= 3600:
        n, unit = seconds // 3600, "hour"
    else:
        n, unit = max(1, seconds // 60) if seconds else 0, "minute"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def short_duration(delta: timedelta) -> str:
    """'23 d', '5 h', '12 min' (written on segments)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of time a referral spent in one state."""

    state: str
    start: datetime
    end: datetime
    ongoing: bool  # the referral's current state: it runs on to now
    reason: str | None = None

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def is_wait(self) -> bool:
        return self.state in WAITS


@dataclass(frozen=True)
class Ending:
    state: str
    at: datetime
    reason: str | None = None

    @property
    def bounce(self) -> bool:
        return self.state in BOUNCES


@dataclass(frozen=True)
class Track:
    """One referral: its row in its category's lane."""

    number: int  # 1 = the journey's first referral
    referral_id: str
    category: str
    service_id: str
    from_org: str
    to_org: str
    priority: str
    segments: tuple[Segment, ...]
    ending: Ending | None
    highlighted: bool = False

    @property
    def start(self) -> datetime:
        return self.segments[0].start if self.segments else self.ending.at  # type: ignore[union-attr]

    @property
    def end(self) -> datetime:
        return self.ending.at if self.ending else self.segments[-1].end


@dataclass(frozen=True)
class Lane:
    category: str
    label: str
    tracks: tuple[Track, ...]


@dataclass(frozen=True)
class Link:
    """A referral that followed one which had ended: a re-referral (the same service or kind
    of service) or a referral on to another kind."""

    from_number: int
    to_number: int
    ended_at: datetime
    started_at: datetime
    same_category: bool

    @property
    def label(self) -> str:
        return "re-referred" if self.same_category else "referred on"


@dataclass(frozen=True)
class Mark:
    """A piece of the alert's evidence, numbered as the page lists it."""

    number: int
    referral_id: str | None
    at: datetime
    state: str


@dataclass(frozen=True)
class Row:
    """One line of the table alternative."""

    number: int
    referral_id: str
    service: str
    state: str
    start: datetime
    end: datetime | None  # None: still in this state now
    length: timedelta | None  # None for an ending (a moment)
    note: str


@dataclass(frozen=True)
class Timeline:
    lanes: tuple[Lane, ...]
    links: tuple[Link, ...]
    marks: tuple[Mark, ...]
    start: datetime
    end: datetime
    now: datetime
    summary: str

    @property
    def tracks(self) -> list[Track]:
        return sorted((t for lane in self.lanes for t in lane.tracks), key=lambda t: t.number)

    @property
    def empty(self) -> bool:
        return not self.lanes

    @property
    def bounces(self) -> int:
        return sum(1 for t in self.tracks if t.ending is not None and t.ending.bounce)

    def rows(self, tz: tzinfo = UK) -> list[Row]:
        """The journey as table rows: each state of each referral, then how it ended."""
        out: list[Row] = []
        next_of = {link.from_number: link for link in self.links}
        for t in self.tracks:
            service = category_label(t.category)
            for seg in t.segments:
                note = []
                if seg.is_wait:
                    note.append("waiting")
                if seg.ongoing:
                    note.append("current state")
                note.extend(
                    f"evidence {m.number}"
                    for m in self.marks
                    if m.referral_id == t.referral_id
                    and m.state == seg.state
                    and seg.start <= m.at <= seg.end
                )
                out.append(
                    Row(
                        t.number,
                        t.referral_id,
                        service,
                        state_label(seg.state),
                        seg.start,
                        None if seg.ongoing else seg.end,
                        seg.length,
                        "; ".join(note),
                    )
                )
            if t.ending is not None:
                e = t.ending
                note = ["ended without treatment (a bounce)" if e.bounce else "ended"]
                if e.reason:
                    note.append(f"reason: {e.reason}")
                link = next_of.get(t.number)
                if link is not None:
                    note.append(
                        f"{link.label} as referral {link.to_number} "
                        f"{duration_text(link.started_at - link.ended_at)} later"
                    )
                note.extend(
                    f"evidence {m.number}"
                    for m in self.marks
                    if m.referral_id == t.referral_id and m.state == e.state
                )
                out.append(
                    Row(
                        t.number,
                        t.referral_id,
                        service,
                        state_label(e.state),
                        e.at,
                        e.at,
                        None,
                        "; ".join(note),
                    )
                )
        return out


# --- building it from the journey ---------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _steps(raw: Any) -> list[tuple[datetime, str, str | None]]:
    steps = []
    for s in raw if isinstance(raw, list | tuple) else []:
        at = parse_time(_get(s, "at"))
        state = _get(s, "state")
        if at is None or not isinstance(state, str) or not state:
            continue
        reason = _get(s, "reason")
        steps.append((at, state, reason if isinstance(reason, str) and reason else None))
    steps.sort(key=lambda x: x[0])  # stable: the same time keeps the journey's order
    return steps


def _track(number: int, ep: Any, now: datetime, highlight: frozenset[str]) -> Track | None:
    referral_id = _text(_get(ep, "referral_id"))
    steps = _steps(_get(ep, "steps"))
    if not referral_id or not steps:
        return None
    segments: list[Segment] = []
    ending: Ending | None = None
    for i, (at, state, reason) in enumerate(steps):
        if state in ENDINGS:
            ending = Ending(state, at, reason)
            break  # nothing after an ending belongs to this referral's picture
        nxt = steps[i + 1][0] if i + 1 < len(steps) else None
        ongoing = nxt is None
        segments.append(
            Segment(state, at, nxt if nxt is not None else max(now, at), ongoing, reason)
        )
    return Track(
        number=number,
        referral_id=referral_id,
        category=_text(_get(ep, "category"), "unknown") or "unknown",
        service_id=_text(_get(ep, "service_id")),
        from_org=_text(_get(ep, "from_org")),
        to_org=_text(_get(ep, "to_org")),
        priority=_text(_get(ep, "priority")),
        segments=tuple(segments),
        ending=ending,
        highlighted=referral_id in highlight,
    )


def _same_kind(a: Track, b: Track) -> bool:
    return a.category == b.category or (bool(a.service_id) and a.service_id == b.service_id)


def _links(tracks: Sequence[Track]) -> list[Link]:
    links = []
    for t in tracks:
        if t.ending is None:
            continue
        later = [u for u in tracks if u is not t and u.start >= t.ending.at]
        if not later:
            continue
        # a re-referral to the same kind of service is the loop worth drawing; otherwise the
        # next referral of any kind (A -> B -> A shows as a chain)
        again = [u for u in later if _same_kind(t, u)]
        nxt = min(again or later, key=lambda u: (u.start, u.number))
        links.append(Link(t.number, nxt.number, t.ending.at, nxt.start, _same_kind(t, nxt)))
    return links


def _summary(tracks: Sequence[Track], links: Sequence[Link], now: datetime, tz: tzinfo) -> str:
    if not tracks:
        return "No referrals are recorded in this journey yet."
    kinds = {t.category for t in tracks}
    first = min(t.start for t in tracks)
    n = len(tracks)
    parts = [
        f"{n} referral{'s' if n != 1 else ''} to {len(kinds)} kind"
        f"{'s' if len(kinds) != 1 else ''} of service, from {day_text(first, tz)} to "
        f"{day_text(now, tz)}."
    ]
    ended: dict[str, int] = {}
    for t in tracks:
        if t.ending is not None:
            ended[t.ending.state] = ended.get(t.ending.state, 0) + 1
    if ended:
        words = [
            f"{count} {ENDINGS[state].lower()}"
            for state, count in sorted(ended.items(), key=lambda x: list(ENDINGS).index(x[0]))
        ]
        bounced = sum(c for s, c in ended.items() if s in BOUNCES)
        parts.append(
            f"Ended: {', '.join(words)}" + (f" ({bounced} without treatment)." if bounced else ".")
        )
    again = sum(1 for link in links if link.same_category)
    if again:
        parts.append(
            f"{again} re-referral{'s' if again != 1 else ''} to the same kind of "
            "service after an ending."
        )
    open_now = [t for t in tracks if t.ending is None and t.segments]
    if open_now:
        words = []
        for t in open_now:
            seg = t.segments[-1]
            words.append(
                f"{category_label(t.category)}: {state_label(seg.state).lower()} "
                f"for {duration_text(now - seg.start)}"
            )
        parts.append(f"Open now: {'; '.join(words)}.")
    else:
        parts.append("No referral is open now.")
    return " ".join(parts)


def build(
    episodes: Iterable[Any] | None,
    *,
    now: datetime,
    highlight: Iterable[str] = (),
    evidence: Iterable[Any] = (),
    tz: tzinfo = UK,
) -> Timeline:
    """The timeline of a journey's episodes as of `now` (timezone-aware).

    `highlight`: the referral ids the alert is about (their rows say so); `evidence`: the
    alert's evidence items ({referral_id, at, state}), numbered 1.. in the given order."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    marked = frozenset(highlight)
    parsed = []
    for ep in episodes or []:
        track = _track(0, ep, now, marked)
        if track is not None:
            parsed.append(track)
    # numbered in the order they started (the journey keeps that order; ties by id)
    parsed.sort(key=lambda t: (t.start, t.referral_id))
    tracks = [
        Track(
            i + 1,
            t.referral_id,
            t.category,
            t.service_id,
            t.from_org,
            t.to_org,
            t.priority,
            t.segments,
            t.ending,
            t.highlighted,
        )
        for i, t in enumerate(parsed)
    ]
    lanes: list[Lane] = []
    for t in tracks:  # lanes in the order their kind of service first appears
        if not any(lane.category == t.category for lane in lanes):
            lanes.append(
                Lane(
                    t.category,
                    category_label(t.category),
                    tuple(u for u in tracks if u.category == t.category),
                )
            )
    links = _links(tracks)
    marks = []
    for i, e in enumerate(evidence or [], start=1):
        at = parse_time(_get(e, "at"))
        if at is None:
            continue
        rid = _get(e, "referral_id")
        marks.append(
            Mark(i, rid if isinstance(rid, str) and rid else None, at, _text(_get(e, "state")))
        )
    times = [now] + [t.start for t in tracks] + [t.end for t in tracks] + [m.at for m in marks]
    start, end = min(times), max(times)
    # a journey minutes old is drawn over the last ten minutes (it ends at now, on the right)
    start = min(start, end - MIN_SPAN)
    pad = (end - start) * 0.03
    return Timeline(
        tuple(lanes),
        tuple(links),
        tuple(marks),
        start - pad,
        end + pad,
        now,
        _summary(tracks, links, now, tz),
    )


# --- the time axis --------------------------------------------------------------------------------

_MINUTE = 60
_STEPS_SECONDS = [
    1 * _MINUTE,
    2 * _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    15 * _MINUTE,
    30 * _MINUTE,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
]
_STEPS_MONTHS = [1, 2, 3, 6, 12, 24, 60]


def _add_months(d: datetime, months: int) -> datetime:
    m = d.month - 1 + months
    return d.replace(year=d.year + m // 12, month=m % 12 + 1, day=1)


def time_ticks(
    start: datetime, end: datetime, *, max_ticks: int = 8, tz: tzinfo = UK
) -> list[tuple[datetime, str]]:
    """Ticks for the axis between start and end (inclusive), at a step that gives at most
    `max_ticks`, aligned to whole minutes/hours/days (local time) or months; with labels."""
    if end <= start:
        return []
    span = (end - start).total_seconds()
    local_start = start.astimezone(tz)
    for step in _STEPS_SECONDS:
        if span / step <= max_ticks:
            if step < 86400:
                epoch = int(
                    local_start.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
                )
                first = epoch + -(-(int(start.timestamp()) - epoch) // step) * step
                ticks = [
                    datetime.fromtimestamp(t, tz)
                    for t in range(first, int(end.timestamp()) + 1, step)
                ]
                fmt = _sub_day_labels
            else:
                day = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
                if day < local_start:
                    day += timedelta(days=1)
                if step % (7 * 86400) == 0:  # weeks start on Mondays
                    day += timedelta(days=(7 - day.weekday()) % 7)
                ticks = []
                while day <= end:
                    ticks.append(day)
                    day = (day + timedelta(days=step // 86400)).replace(hour=0, minute=0)
                fmt = _day_labels
            return list(zip(ticks, fmt(ticks, tz), strict=True))
    for months in _STEPS_MONTHS:
        if span / (months * 30.44 * 86400) <= max_ticks:
            break
    m = local_start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if m < local_start:
        m = _add_months(m, 1)
    while (m.month - 1) % months:
        m = _add_months(m, 1)
    ticks = []
    while m <= end:
        ticks.append(m)
        m = _add_months(m, months)
    labels = [
        f"{t:%b}" if i and t.month != 1 and t.year == ticks[i - 1].year else f"{t:%b %Y}"
        for i, t in enumerate(ticks)
    ]
    return list(zip(ticks, labels, strict=True))


def _sub_day_labels(ticks: list[datetime], tz: tzinfo) -> list[str]:
    out = []
    for i, t in enumerate(ticks):
        local = t.astimezone(tz)
        new_day = i == 0 or local.date() != ticks[i - 1].astimezone(tz).date()
        out.append(f"{local.day} {local:%b %H:%M}" if new_day else f"{local:%H:%M}")
    return out


def _day_labels(ticks: list[datetime], tz: tzinfo) -> list[str]:
    out = []
    for i, t in enumerate(ticks):
        local = t.astimezone(tz)
        new_year = i == 0 or local.year != ticks[i - 1].astimezone(tz).year
        out.append(f"{local.day} {local:%b %Y}" if new_year else f"{local.day} {local:%b}")
    return out


# --- drawing --------------------------------------------------------------------------------------


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _fits(text: str, width: float) -> bool:
    return len(text) * CHAR_PX + 8 <= width


_HALO = 'paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"'


def _defs(p: str) -> str:
    return (
        "<defs>"
        f'<pattern id="{p}-wait" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="8" height="8" fill="#fff4d6"/><rect width="3" height="8" '
        f'fill="{YELLOW}"/></pattern>'
        f'<pattern id="{p}-hold" width="8" height="8" patternUnits="userSpaceOnUse">'
        f'<rect width="8" height="8" fill="{PALE}"/><path d="M0 4H8M4 0V8" '
        f'stroke="#aeb7bd" stroke-width="2"/></pattern>'
        f'<pattern id="{p}-dna" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(-45)">'
        f'<rect width="8" height="8" fill="#fde8e6"/><rect width="3" height="8" fill="{RED}"/>'
        "</pattern>"
        f'<marker id="{p}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" '
        f'fill="{GREY}"/></marker>'
        "</defs>"
    )


_FILL = {
    "submitted": ("wait", INK),
    "accepted": ("wait", INK),
    "on_hold": ("hold", INK),
    "did_not_attend": ("dna", INK),
    "booked": (BLUE, "#ffffff"),
    "attended": (GREEN, "#ffffff"),
    "draft": (PALE, INK),
}


def _fill(state: str, p: str) -> tuple[str, str]:
    fill, ink = _FILL.get(state, (PALE, INK))
    return (f"url(#{p}-{fill})" if not fill.startswith("#") else fill), ink


def _end_marker(state: str, x: float, y: float) -> str:
    """A shape per ending (with the label beside it, never the shape alone)."""
    r = 8
    if state == "rejected":  # a cross in a circle
        return (
            f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{r}" fill="#ffffff" stroke="{RED}" '
            f'stroke-width="2"/><path d="M{_f(x - 4)} {_f(y - 4)}L{_f(x + 4)} {_f(y + 4)}'
            f'M{_f(x + 4)} {_f(y - 4)}L{_f(x - 4)} {_f(y + 4)}" stroke="{RED}" '
            'stroke-width="2"/>'
        )
    if state == "returned":  # a U-turn arrow in a circle
        return (
            f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{r}" fill="#ffffff" stroke="{RED}" '
            f'stroke-width="2"/><path d="M{_f(x + 3)} {_f(y + 4)}H{_f(x - 1)}'
            f"A3 3 0 0 1 {_f(x - 1)} {_f(y - 2)}H{_f(x + 3)}M{_f(x + 1)} {_f(y - 4)}"
            f'L{_f(x + 3)} {_f(y - 2)}L{_f(x + 1)} {_f(y)}" fill="none" stroke="{RED}" '
            'stroke-width="1.6"/>'
        )
    if state == "cancelled":  # a circle with a slash
        return (
            f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{r}" fill="#ffffff" stroke="{INK}" '
            f'stroke-width="2"/><path d="M{_f(x - 5)} {_f(y + 5)}L{_f(x + 5)} {_f(y - 5)}" '
            f'stroke="{INK}" stroke-width="2"/>'
        )
    # discharged: a filled square (a finish)
    return (
        f'<rect x="{_f(x - 7)}" y="{_f(y - 7)}" width="14" height="14" fill="{GREEN}" '
        f'stroke="{INK}" stroke-width="1"/>'
    )


def render_svg(
    tl: Timeline,
    *,
    id_prefix: str = "timeline",
    title: str = "The person's journey between services",
    tz: tzinfo = UK,
) -> Markup:
    """The timeline as an inline SVG (role="img", labelled by its title and description)."""
    p = escape(id_prefix)
    n_rows = sum(len(lane.tracks) for lane in tl.lanes)
    height = TOP + len(tl.lanes) * LANE_HEADER + max(n_rows, 1) * ROW + AXIS
    plot_w = WIDTH - GUTTER - RIGHT
    span = (tl.end - tl.start).total_seconds() or 1.0

    def x(when: datetime) -> float:
        return GUTTER + (when - tl.start).total_seconds() / span * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{p}-title {p}-desc" viewBox="0 0 {WIDTH} {height}" '
        f'class="timeline-svg" font-family="inherit" font-size="12">',
        f'<title id="{p}-title">{escape(title)}</title>',
        f'<desc id="{p}-desc">{escape(tl.summary)}</desc>',
        _defs(str(p)),
    ]
    if tl.empty:
        out.append(
            f'<text x="{WIDTH / 2}" y="{_f(height / 2)}" text-anchor="middle" '
            f'fill="{INK}">{escape(tl.summary)}</text></svg>'
        )
        return Markup("".join(out))

    bottom = height - AXIS
    # the axis: gridlines and labels under every lane
    for when, label in time_ticks(tl.start, tl.end, tz=tz):
        tx = x(when)
        out.append(
            f'<line x1="{_f(tx)}" y1="{TOP}" x2="{_f(tx)}" y2="{bottom}" '
            f'stroke="#d8dde0" stroke-width="1"/>'
            f'<text x="{_f(tx)}" y="{bottom + 16}" text-anchor="middle" '
            f'fill="{INK}">{escape(label)}</text>'
        )
    out.append(
        f'<line x1="{GUTTER}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" '
        f'stroke="{INK}" stroke-width="1"/>'
    )

    centre: dict[int, float] = {}
    y = TOP
    for i, lane in enumerate(tl.lanes):
        lane_h = LANE_HEADER + len(lane.tracks) * ROW
        if i % 2 == 0:
            out.append(
                f'<rect x="0" y="{y}" width="{WIDTH}" height="{lane_h}" '
                f'fill="{PALE}" fill-opacity="0.6"/>'
            )
        out.append(
            f'<text x="6" y="{y + 15}" font-weight="bold" fill="{INK}">{escape(lane.label)}</text>'
        )
        y += LANE_HEADER
        for t in lane.tracks:
            cy = y + ROW / 2
            centre[t.number] = cy
            label = f"Referral {t.number}" + (" (this alert)" if t.highlighted else "")
            weight = ' font-weight="bold"' if t.highlighted else ""
            out.append(
                f'<text x="{GUTTER - 8}" y="{_f(cy + 4)}" text-anchor="end" '
                f'fill="{INK}"{weight}>{escape(label)}</text>'
            )
            out.extend(_segments(t, cy, x, str(p), tl.now, tz))
            if t.ending is not None:
                ex = x(t.ending.at)
                words = ENDINGS[t.ending.state]
                out.append(
                    f"<g><title>{escape(_ending_title(t, tz))}</title>"
                    f"{_end_marker(t.ending.state, ex, cy)}"
                    f'<text x="{_f(ex + 12)}" y="{_f(cy + 4)}" fill="{INK}" '
                    f'font-weight="bold" {_HALO}>{escape(words)}</text></g>'
                )
            y += ROW
        if i < len(tl.lanes) - 1:
            out.append(
                f'<line x1="0" y1="{y}" x2="{WIDTH}" y2="{y}" stroke="#aeb7bd" stroke-width="1"/>'
            )

    for link in tl.links:
        x1, y1 = x(link.ended_at), centre[link.from_number]
        x2, y2 = x(link.started_at), centre[link.to_number]
        y1 += 9 if y2 > y1 else -9  # leave from the marker's edge
        mid = (x1 + x2) / 2
        tip = f"Referral {link.to_number} {link.label} after referral {link.from_number} ended"
        out.append(
            f"<g><title>{escape(tip)}</title>"
            f'<path d="M{_f(x1)} {_f(y1)}C{_f(mid)} {_f(y1)} {_f(mid)} {_f(y2)} '
            f'{_f(x2 - 2)} {_f(y2)}" fill="none" stroke="{GREY}" stroke-width="1.5" '
            f'stroke-dasharray="4 3" marker-end="url(#{p}-arrow)"/>'
            f'<text x="{_f(mid)}" y="{_f((y1 + y2) / 2 + 4)}" text-anchor="middle" '
            f'font-style="italic" fill="{INK}" {_HALO}>{escape(link.label)}</text></g>'
        )

    for m in tl.marks:
        mx = x(m.at)
        row = next((t.number for t in tl.tracks if t.referral_id == m.referral_id), None)
        my = centre[row] - BAR / 2 - 2 if row is not None else TOP + 4.0
        tip = f"Evidence {m.number}: {state_label(m.state)}, {when_text(m.at, tz)}"
        out.append(
            f"<g><title>{escape(tip)}</title>"
            f'<circle cx="{_f(mx)}" cy="{_f(my)}" r="8" fill="{PURPLE}" '
            f'stroke="#ffffff" stroke-width="1.5"/><text x="{_f(mx)}" y="{_f(my + 4)}" '
            f'text-anchor="middle" fill="#ffffff" font-size="11" font-weight="bold">'
            f"{m.number}</text></g>"
        )

    nx = x(tl.now)
    out.append(
        f'<line x1="{_f(nx)}" y1="{TOP - 6}" x2="{_f(nx)}" y2="{bottom}" stroke="{INK}" '
        f'stroke-width="1.5" stroke-dasharray="2 3"/>'
        f'<text x="{_f(nx)}" y="{TOP - 10}" text-anchor="middle" font-weight="bold" '
        f'fill="{INK}">Today</text>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def _ending_title(t: Track, tz: tzinfo) -> str:
    assert t.ending is not None
    e = t.ending
    text = f"Referral {t.number} {state_label(e.state).lower()} on {when_text(e.at, tz)}"
    return text + (f" (reason: {e.reason})" if e.reason else "")


def _segments(t: Track, cy: float, x: Any, p: str, now: datetime, tz: tzinfo) -> list[str]:
    out = []
    top = cy - BAR / 2
    for seg in t.segments:
        x1, x2 = x(seg.start), x(seg.end)
        w = max(x2 - x1, 3.0)
        fill, ink = _fill(seg.state, p)
        length = seg.length
        name = SHORT_NAMES.get(seg.state, state_label(seg.state))
        label = f"{name} {short_duration(length)}" if seg.is_wait else name
        tip = (
            f"Referral {t.number}: {state_label(seg.state)} from {when_text(seg.start, tz)}"
            + (" until now" if seg.ongoing else f" to {when_text(seg.end, tz)}")
            + f" ({duration_text(length)})"
        )
        stroke = f'stroke="{INK}" stroke-width="{2 if t.highlighted else 1}"'
        out.append(
            f'<g><title>{escape(tip)}</title><rect x="{_f(x1)}" y="{_f(top)}" '
            f'width="{_f(w)}" height="{BAR}" fill="{fill}" {stroke}/>'
        )
        if _fits(label, w):
            halo = _HALO if ink == INK else ""
            out.append(
                f'<text x="{_f(x1 + 4)}" y="{_f(cy + 4)}" fill="{ink}" {halo}>'
                f"{escape(label)}</text>"
            )
        elif seg.is_wait and _fits(short_duration(length), w):
            out.append(
                f'<text x="{_f(x1 + 4)}" y="{_f(cy + 4)}" fill="{INK}" {_HALO}>'
                f"{escape(short_duration(length))}</text>"
            )
        if seg.ongoing:  # an open end: an arrowhead says it carries on
            out.append(
                f'<path d="M{_f(x2)} {_f(top - 2)}L{_f(x2 + 7)} {_f(cy)}L{_f(x2)} '
                f'{_f(top + BAR + 2)}z" fill="{INK}"/>'
            )
        out.append("</g>")
    return out
