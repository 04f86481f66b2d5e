"""The journey timeline drawn as an inline SVG: a swimlane per category of service, each
referral a row of segments (the states it was in), ends marked with a shape *and* a text label,
re-referrals drawn as labelled arrows, waits hatched with their length written on them, the
alert's evidence as numbered marks, the person's contacts outside referrals in rows of their
own (timeline_contacts_svg.py), and today's line; with its time axis.

Pure: no I/O, no clock. Every piece of text that reaches the SVG is escaped.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from markupsafe import Markup, escape

from services.notifications.dashboard import timeline_contacts_svg as contacts_svg
from services.notifications.dashboard.labels import (
    UK,
    duration_text,
    short_duration,
    state_label,
    when_text,
)
from services.notifications.dashboard.timeline import ENDINGS, Timeline, Track

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

# colours (NHS identity palette), each shape also outlined in near-black for 3:1 contrast
INK = "#212b32"
GREY = "#4c6272"
PALE = "#f0f4f5"
BLUE = "#005eb8"
GREEN = "#007f3b"
YELLOW = "#ffb81c"
RED = "#d5281b"
PURPLE = "#330072"

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
    if tl.empty:
        n_rows = 1  # room for the sentence that says so
    contacts_top = TOP + len(tl.lanes) * LANE_HEADER + n_rows * ROW
    height = contacts_top + contacts_svg.height(tl.contacts) + AXIS
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

    out.extend(
        contacts_svg.draw(
            tl.contacts,
            top=contacts_top,
            width=WIDTH,
            gutter=GUTTER,
            x=x,
            shaded=len(tl.lanes) % 2 == 0,
            tz=tz,
        )
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
