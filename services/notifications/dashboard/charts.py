"""Small server-drawn SVG charts for the overview: a line chart (figures by month) and a
horizontal grouped bar chart (figures by category of service), each with a title and a
description for assistive technology, and the same figures as a data table.

Series are told apart by more than colour: lines by dash pattern and marker shape, bars by fill
pattern, every series named in a legend, and every bar carries its value as text.

Pure: no I/O. Missing values (None, NaN, infinities) are gaps, never an error; every piece of
text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

INK = "#212b32"
GRID = "#d8dde0"

#: per series: colour, line dash, marker shape, bar fill pattern
STYLES: tuple[tuple[str, str, str, str], ...] = (
    ("#005eb8", "", "circle", "solid"),
    ("#7c2855", "7 4", "square", "diagonal"),
    ("#007f3b", "2 3", "triangle", "cross"),
    ("#4c6272", "10 3 2 3", "diamond", "dots"),
)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def clean(value: object) -> float | None:
    """A number to draw, or None (a gap) for anything that isn't a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure as the charts and tables write it: '12.5', '3', '–' when missing."""
    v = clean(value)
    if v is None:
        return "–"
    text = f"{v:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _nice(x: float, round_up: bool) -> float:
    """1, 2, 2.5, 5 or 10 times a power of ten, at or above (or nearest) x."""
    if x <= 0:
        return 0.0
    exp = math.floor(math.log10(x))
    f = x / 10**exp
    steps = (1, 2, 2.5, 5, 10)
    if round_up:
        n = next(s for s in steps if f <= s + 1e-9)
    else:
        n = min(steps, key=lambda s: abs(s - f))
    return n * 10**exp


def nice_scale(lo: float, hi: float, max_ticks: int = 5) -> list[float]:
    """Round tick values covering [lo, hi], zero included, at most about max_ticks + 1."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    step = _nice((hi - lo) / max(max_ticks, 1), round_up=True)
    first = math.floor(lo / step + 1e-9)

    def tick(n: int) -> float:
        return float(f"{n * step:.12g}") + 0.0  # no float noise such as 0.30000000000000004

    ticks = [tick(first)]
    while ticks[-1] < hi - step * 1e-9 or len(ticks) < 2:
        ticks.append(tick(first + len(ticks)))
    return ticks


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _columns(labels: Sequence[str], series: Sequence[Series]) -> list[list[float | None]]:
    """Each series' values, one per label (short series padded with gaps, long cut)."""
    n = len(labels)
    return [
        [clean(v) for v in list(s.values)[:n]] + [None] * max(0, n - len(s.values)) for s in series
    ]


def _open(p: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{p}-title {p}-desc" viewBox="0 0 {width} {height}" '
        f'class="chart-svg" font-family="inherit" font-size="12">',
        f'<title id="{p}-title">{escape(title)}</title>',
        f'<desc id="{p}-desc">{escape(desc)}</desc>',
    ]


def _no_data(out: list[str], width: int, height: int) -> Markup:
    out.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{INK}">'
        "No figures to show yet</text></svg>"
    )
    return Markup("".join(out))


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{_f(x - 4)}" y="{_f(y - 4)}" width="8" height="8" fill="{colour}"/>'
    if shape == "triangle":
        return (
            f'<path d="M{_f(x)} {_f(y - 5)}L{_f(x + 5)} {_f(y + 4)}L{_f(x - 5)} '
            f'{_f(y + 4)}z" fill="{colour}"/>'
        )
    if shape == "diamond":
        return (
            f'<path d="M{_f(x)} {_f(y - 5)}L{_f(x + 5)} {_f(y)}L{_f(x)} {_f(y + 5)}'
            f'L{_f(x - 5)} {_f(y)}z" fill="{colour}"/>'
        )
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="4" fill="{colour}"/>'


def _patterns(p: str, n: int) -> str:
    out = ["<defs>"]
    for i in range(n):
        colour, _, _, fill = STYLES[i % len(STYLES)]
        pid = f"{p}-fill{i}"
        if fill == "diagonal":
            out.append(
                f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse" '
                f'patternTransform="rotate(45)"><rect width="6" height="6" '
                f'fill="#ffffff"/><rect width="3" height="6" fill="{colour}"/></pattern>'
            )
        elif fill == "cross":
            out.append(
                f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                f'<rect width="6" height="6" fill="#ffffff"/><path d="M0 3H6M3 0V6" '
                f'stroke="{colour}" stroke-width="2"/></pattern>'
            )
        elif fill == "dots":
            out.append(
                f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                f'<rect width="6" height="6" fill="#ffffff"/><circle cx="3" cy="3" '
                f'r="1.8" fill="{colour}"/></pattern>'
            )
    out.append("</defs>")
    return "".join(out)


def _bar_fill(p: str, i: int) -> str:
    colour, _, _, fill = STYLES[i % len(STYLES)]
    return colour if fill == "solid" else f"url(#{p}-fill{i})"


def _legend(series: Sequence[Series], x: float, y: float, p: str, *, bars: bool) -> list[str]:
    out = []
    for i, s in enumerate(series):
        colour, dash, shape, _ = STYLES[i % len(STYLES)]
        ly = y + i * 18
        if bars:
            out.append(
                f'<rect x="{_f(x)}" y="{_f(ly - 6)}" width="22" height="12" '
                f'fill="{_bar_fill(p, i)}" stroke="{colour}" stroke-width="1.5"/>'
            )
        else:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(
                f'<line x1="{_f(x)}" y1="{_f(ly)}" x2="{_f(x + 22)}" y2="{_f(ly)}" '
                f'stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
                + _marker(shape, x + 11, ly, colour)
            )
        out.append(f'<text x="{_f(x + 28)}" y="{_f(ly + 4)}" fill="{INK}">{escape(s.name)}</text>')
    return out


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    y_label: str,
    id_prefix: str = "chart",
    width: int = 720,
    height: int = 320,
) -> Markup:
    """Lines over the labels (e.g. months), one per series; gaps where a value is missing."""
    p = str(escape(id_prefix))
    legend_h = 18 * len(series) + 8
    out = _open(p, width, height + legend_h, title, desc)
    cols = _columns(labels, series)
    values = [v for col in cols for v in col if v is not None]
    if not labels or not values:
        return _no_data(out, width, height + legend_h)
    left, right, top, bottom = 56, 36, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_scale(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(labels) == 1 else i * plot_w / (len(labels) - 1))

    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{_f(y(t))}" x2="{width - right}" y2="{_f(y(t))}" '
            f'stroke="{INK if t == 0 else GRID}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{_f(y(t) + 4)}" text-anchor="end" '
            f'fill="{INK}">{escape(fmt(t, 2))}</text>'
        )
    out.append(
        f'<text x="12" y="{_f(top + plot_h / 2)}" text-anchor="middle" fill="{INK}" '
        f'transform="rotate(-90 12 {_f(top + plot_h / 2)})">{escape(y_label)}</text>'
    )
    every = max(1, math.ceil(len(labels) / 12))  # at most 12 labels under the axis
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            out.append(
                f'<text x="{_f(x(i))}" y="{height - bottom + 18}" text-anchor="middle" '
                f'fill="{INK}">{escape(label)}</text>'
            )
    for si, (s, col) in enumerate(zip(series, cols, strict=True)):
        colour, dash, shape, _ = STYLES[si % len(STYLES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(col):
            if v is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(f"{_f(x(i))} {_f(y(v))}")
        if run:
            runs.append(run)
        out.append(f"<g><title>{escape(s.name)}</title>")
        for r in runs:
            if len(r) > 1:
                out.append(
                    f'<path d="M{"L".join(r)}" fill="none" stroke="{colour}" '
                    f'stroke-width="2.5"{dash_attr}/>'
                )
        for i, v in enumerate(col):
            if v is not None:
                out.append(
                    f"<g><title>{escape(f'{s.name}, {labels[i]}: {fmt(v)}')}</title>"
                    f"{_marker(shape, x(i), y(v), colour)}</g>"
                )
        out.append("</g>")
    out.extend(_legend(series, left, height + 8, p, bars=False))
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    x_label: str,
    id_prefix: str = "chart",
    width: int = 720,
) -> Markup:
    """Horizontal bars grouped by category (one bar per series), each with its value."""
    p = str(escape(id_prefix))
    bar_h, gap = 16, 14
    group_h = bar_h * max(len(series), 1) + gap
    left, right, top, axis = 210, 60, 12, 40
    legend_h = 18 * len(series) + 8
    plot_h = group_h * len(categories)
    height = top + plot_h + axis + legend_h
    out = _open(p, width, height, title, desc)
    cols = _columns(categories, series)
    values = [v for col in cols for v in col if v is not None]
    if not categories or not values:
        return _no_data(out, width, max(height, 80))
    out.append(_patterns(p, len(series)))
    ticks = nice_scale(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    for t in ticks:
        out.append(
            f'<line x1="{_f(x(t))}" y1="{top}" x2="{_f(x(t))}" y2="{top + plot_h}" '
            f'stroke="{INK if t == 0 else GRID}" stroke-width="1"/>'
            f'<text x="{_f(x(t))}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'fill="{INK}">{escape(fmt(t, 2))}</text>'
        )
    out.append(
        f'<text x="{_f(left + plot_w / 2)}" y="{top + plot_h + 34}" '
        f'text-anchor="middle" fill="{INK}">{escape(x_label)}</text>'
    )
    for ci, category in enumerate(categories):
        gy = top + ci * group_h + gap / 2
        out.append(
            f'<text x="{left - 8}" y="{_f(gy + bar_h * len(series) / 2 + 4)}" '
            f'text-anchor="end" fill="{INK}">{escape(_clip(category, 30))}</text>'
        )
        for si, s in enumerate(series):
            v = cols[si][ci]
            by = gy + si * bar_h
            colour = STYLES[si % len(STYLES)][0]
            tip = f"{s.name}, {category}: {fmt(v)}"
            if v is None:
                out.append(
                    f'<g><title>{escape(tip)}</title><text x="{left + 4}" '
                    f'y="{_f(by + bar_h - 4)}" fill="{INK}">no figure</text></g>'
                )
                continue
            x0, x1 = sorted((x(0.0), x(v)))
            out.append(
                f"<g><title>{escape(tip)}</title>"
                f'<rect x="{_f(x0)}" y="{_f(by + 1)}" width="{_f(max(x1 - x0, 1.0))}" '
                f'height="{bar_h - 2}" fill="{_bar_fill(p, si)}" stroke="{colour}" '
                f'stroke-width="1.5"/>'
                f'<text x="{_f(x1 + 4)}" y="{_f(by + bar_h - 4)}" fill="{INK}">'
                f"{escape(fmt(v))}</text></g>"
            )
    out.extend(_legend(series, left, top + plot_h + axis + 12, p, bars=True))
    out.append("</svg>")
    return Markup("".join(out))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def data_table(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    caption: str,
    label_header: str,
    format_value: Callable[[float | None], str] = fmt,
    table_id: str | None = None,
) -> Markup:
    """The chart's figures as a table: a row per label, a column per series."""
    cols = _columns(labels, series)
    ident = f' id="{escape(table_id)}"' if table_id else ""
    caption_id = f' id="{escape(table_id)}-caption"' if table_id else ""
    out = [
        f'<table class="table data-table"{ident}><caption{caption_id}>{escape(caption)}'
        "</caption><thead><tr>"
        f'<th scope="col">{escape(label_header)}</th>'
    ]
    out.extend(f'<th scope="col" class="numeric">{escape(s.name)}</th>' for s in series)
    out.append("</tr></thead><tbody>")
    for i, label in enumerate(labels):
        out.append(f'<tr><th scope="row">{escape(label)}</th>')
        out.extend(f'<td class="numeric">{escape(format_value(col[i]))}</td>' for col in cols)
        out.append("</tr>")
    out.append("</tbody></table>")
    return Markup("".join(out))
