"""The person's contacts drawn in the journey timeline's SVG (timeline_svg.py calls this): a
header row with its legend, then a row per kind of contact, each contact a mark with its words
as a tooltip. Unplanned contacts are filled diamonds, planned ones open circles, and one that
has not happened (booked, did not attend) has a dashed outline: told apart by shape and fill,
never by colour alone, and the legend says which is which.

Pure: no I/O, no clock. Every piece of text that reaches the SVG is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

from markupsafe import escape

from services.notifications.dashboard.labels import UK
from services.notifications.dashboard.timeline_contacts import ContactLane, ContactMark

HEADER = 22  # the contacts' header row, with the legend
ROW = 26  # a row of one kind of contact
LABEL_FONT = 11  # the kinds' names in the gutter ("GP out-of-hours contact" must fit)

INK = "#212b32"
RED = "#d5281b"
BLUE = "#005eb8"
PALE = "#f0f4f5"


def height(lanes: Sequence[ContactLane]) -> int:
    """The contacts' share of the SVG's height (none without contacts)."""
    return HEADER + len(lanes) * ROW if lanes else 0


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def shape(unplanned: bool, happened: bool, x: float, y: float) -> str:
    """A filled diamond (unplanned) or an open circle (planned); dashed when not happened."""
    dash = "" if happened else ' stroke-dasharray="2 2"'
    if unplanned:
        r = 7
        fill = RED if happened else "#ffffff"
        return (
            f'<path d="M{_f(x)} {_f(y - r)}L{_f(x + r)} {_f(y)}L{_f(x)} {_f(y + r)}'
            f'L{_f(x - r)} {_f(y)}z" fill="{fill}" stroke="{INK}" stroke-width="1.5"{dash}/>'
        )
    return (
        f'<circle cx="{_f(x)}" cy="{_f(y)}" r="5.5" fill="#ffffff" stroke="{BLUE}" '
        f'stroke-width="2.5"{dash}/>'
    )


def _mark(m: ContactMark, x: float, y: float, tz: tzinfo) -> str:
    return (
        f'<g class="contact contact--{m.planning}" data-encounter="{escape(m.encounter_id)}">'
        f"<title>{escape(m.title(tz))}</title>{shape(m.unplanned, m.happened, x, y)}</g>"
    )


def draw(
    lanes: Sequence[ContactLane],
    *,
    top: float,
    width: float,
    gutter: float,
    x: Callable[[datetime], float],
    shaded: bool,
    tz: tzinfo = UK,
) -> list[str]:
    """The contacts' rows from `top` down (`gutter`: where the plot starts); `shaded`: this
    section takes the lanes' alternate shading."""
    if not lanes:
        return []
    h = height(lanes)
    out = []
    if shaded:
        out.append(
            f'<rect x="0" y="{_f(top)}" width="{_f(width)}" height="{h}" '
            f'fill="{PALE}" fill-opacity="0.6"/>'
        )
    out.append(
        f'<line x1="0" y1="{_f(top)}" x2="{_f(width)}" y2="{_f(top)}" stroke="#aeb7bd" '
        'stroke-width="1"/>'
        f'<text x="6" y="{_f(top + 15)}" font-weight="bold" fill="{INK}">'
        "Contacts outside referrals</text>"
    )
    # the legend, in the header row after its title (today's line is usually far right)
    lx = gutter + 70
    out.append(
        f'<g class="contact-legend">{shape(True, True, lx, top + 11)}'
        f'<text x="{_f(lx + 11)}" y="{_f(top + 15)}" fill="{INK}">unplanned</text>'
        f"{shape(False, True, lx + 90, top + 11)}"
        f'<text x="{_f(lx + 101)}" y="{_f(top + 15)}" fill="{INK}">planned</text>'
        f"{shape(False, False, lx + 168, top + 11)}"
        f'<text x="{_f(lx + 179)}" y="{_f(top + 15)}" fill="{INK}">booked or missed</text></g>'
    )
    y = top + HEADER
    for lane in lanes:
        cy = y + ROW / 2
        out.append(
            f'<text x="{_f(gutter - 8)}" y="{_f(cy + 4)}" text-anchor="end" fill="{INK}" '
            f'font-size="{LABEL_FONT}">{escape(lane.label)}</text>'
        )
        out.extend(_mark(m, x(m.at), cy, tz) for m in lane.marks)
        y += ROW
    return out
