"""The patient's journey as a timeline: a swimlane per category of service over time, each
referral a row of segments (the states it was in), its ending (returned, not accepted,
cancelled, discharged), re-referrals as links between rows, the alert's evidence as numbered
marks, the person's contacts with care outside referrals as marks in rows of their own
(timeline_contacts.py), and today. Beside the picture (timeline_svg.py draws it), the same
journey as rows of a table and a one-paragraph summary (the SVG's description), so nothing is
told by the picture alone.

Pure: no I/O, no clock (the caller passes `now`). Input is the journey query's episodes, as
Temporal's JSON converter returns them (dicts) or as `workflows.journeys.state.Episode`
objects; malformed entries are skipped, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from services.notifications.dashboard.labels import (
    UK,
    category_label,
    day_text,
    duration_text,
    parse_time,
    state_label,
)
from services.notifications.dashboard.timeline_contacts import (
    ContactLane,
    ContactMark,
    contact_lanes,
    contacts_summary,
)

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
MIN_SPAN = timedelta(minutes=10)  # the shortest stretch of time the picture shows


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
    contacts: tuple[ContactLane, ...] = ()

    @property
    def tracks(self) -> list[Track]:
        return sorted((t for lane in self.lanes for t in lane.tracks), key=lambda t: t.number)

    @property
    def contact_marks(self) -> list[ContactMark]:
        """Every contact shown, in time order."""
        return sorted(
            (m for lane in self.contacts for m in lane.marks), key=lambda m: (m.at, m.encounter_id)
        )

    @property
    def empty(self) -> bool:
        return not self.lanes and not self.contacts

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
    contacts: Iterable[Any] | None = (),
    tz: tzinfo = UK,
) -> Timeline:
    """The timeline of a journey's episodes as of `now` (timezone-aware).

    `highlight`: the referral ids the alert is about (their rows say so); `evidence`: the
    alert's evidence items ({referral_id, at, state}), numbered 1.. in the given order;
    `contacts`: the person's contacts with care outside referrals (the contact index's rows)."""
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
    contact_rows = contact_lanes(contacts)
    times = [now] + [t.start for t in tracks] + [t.end for t in tracks] + [m.at for m in marks]
    times += [c.at for lane in contact_rows for c in lane.marks]
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
        " ".join(filter(None, [_summary(tracks, links, now, tz), contacts_summary(contact_rows)])),
        contact_rows,
    )
