"""The overview's small SVG charts (services/notifications/dashboard/charts.py): pure, so plain
unit tests: numbers and scales, the line and bar charts (accessible name, series told apart
by more than colour, gaps, labels, escaping) and the data table that carries the same
figures."""

from __future__ import annotations

import math
import re

import pytest

from services.notifications.dashboard import charts as C

MONTHS = [
    "Apr 2025",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
    "Jan 2026",
    "Feb",
    "Mar",
]


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


class TestNumbers:
    @pytest.mark.parametrize(
        "value,expected",
        [
            (3, 3.0),
            (2.5, 2.5),
            (0, 0.0),
            (-4.25, -4.25),
            (None, None),
            (math.nan, None),
            (math.inf, None),
            (-math.inf, None),
            (True, None),
            ("12", None),
            ([1], None),
        ],
    )
    def test_clean_keeps_finite_numbers_only(self, value, expected):
        assert C.clean(value) == expected

    @pytest.mark.parametrize(
        "value,digits,expected",
        [
            (12.5, 1, "12.5"),
            (12.0, 1, "12"),
            (12, 1, "12"),
            (0, 1, "0"),
            (1234.56, 1, "1,234.6"),
            (0.25, 2, "0.25"),
            (0.2, 2, "0.2"),
            (-0.04, 1, "0"),
            (-3.5, 1, "-3.5"),
            (None, 1, "–"),
            (math.nan, 1, "–"),
            (1000000, 1, "1,000,000"),
        ],
    )
    def test_fmt(self, value, digits, expected):
        assert C.fmt(value, digits) == expected

    @pytest.mark.parametrize(
        "lo,hi",
        [
            (0, 37.2),
            (0, 0),
            (5, 5),
            (-3, 8),
            (0, 0.04),
            (0, 1000),
            (0, 61),
            (12, 13),
            (-50, -10),
            (0, 1e-9),
            (0, 999.99),
            (2.5, 97.5),
        ],
    )
    def test_nice_scales_cover_the_range_from_zero_in_equal_round_steps(self, lo, hi):
        ticks = C.nice_scale(lo, hi)
        assert ticks[0] <= min(lo, 0) and ticks[-1] >= max(hi, 0)
        assert 0.0 in ticks
        step = ticks[1] - ticks[0]
        assert step > 0 and all(
            math.isclose(b - a, step, rel_tol=1e-6) for a, b in zip(ticks, ticks[1:], strict=False)
        )
        assert 2 <= len(ticks) <= 8
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


class TestLineChart:
    def chart(self, **kw: object) -> str:
        series = kw.pop(
            "series",
            [
                C.Series("Loops", [12, 15, None, 18, 22, 19, 25, 30, 28, 27, 31, 29]),
                C.Series("Stalls", [40, 42, 38, 45, 50, 48, 47, 52, 55, 53, 60, 58]),
            ],
        )
        labels = kw.pop("labels", MONTHS)
        return str(
            C.line_chart(
                labels,
                series,
                title="By month",
                desc="How they went",  # type: ignore[arg-type]
                y_label="per 1,000 referrals",
                id_prefix="m",
                **kw,
            )
        )  # type: ignore[arg-type]

    def test_it_is_an_image_named_by_its_title_and_description(self):
        svg = self.chart()
        assert 'role="img"' in svg and 'aria-labelledby="m-title m-desc"' in svg
        assert '<title id="m-title">By month</title>' in svg
        assert '<desc id="m-desc">How they went</desc>' in svg

    def test_a_missing_value_breaks_the_line_and_has_no_marker(self):
        svg = self.chart()
        assert svg.count('<path d="M') == 3  # loops in two runs, stalls in one
        assert svg.count("<title>Loops, ") == 11 and svg.count("<title>Stalls, ") == 12
        assert "<title>Loops, Jun: " not in svg

    def test_series_differ_by_dash_and_marker_not_only_colour(self):
        svg = self.chart()
        assert 'stroke-dasharray="7 4"' in svg  # the second series is dashed
        assert "<circle" in svg and "<rect x=" in svg  # circles for one, squares for the other
        assert {"Loops", "Stalls"} <= set(texts(svg))  # the legend names both

    def test_every_point_has_its_value_in_words(self):
        assert "<title>Stalls, Feb: 60</title>" in self.chart()

    def test_month_labels_are_written_under_the_axis(self):
        words = texts(self.chart())
        for m in MONTHS:
            assert m in words

    def test_many_labels_are_thinned_to_a_dozen_or_so(self):
        labels = [f"W{i}" for i in range(40)]
        svg = self.chart(labels=labels, series=[C.Series("A", list(range(40)))])
        shown = [w for w in texts(svg) if re.fullmatch(r"W\d+", w)]
        assert 10 <= len(shown) <= 15 and "W0" in shown and "W39" in shown

    def test_one_label_is_drawn_in_the_middle(self):
        svg = self.chart(labels=["Mar"], series=[C.Series("A", [4])])
        assert "<title>A, Mar: 4</title>" in svg

    def test_short_series_are_padded_and_long_ones_cut(self):
        svg = self.chart(
            labels=["a", "b", "c"],
            series=[C.Series("Short", [1]), C.Series("Long", [1, 2, 3, 4, 5])],
        )
        assert svg.count("<title>Short, ") == 1 and svg.count("<title>Long, ") == 3

    @pytest.mark.parametrize(
        "labels,series",
        [
            ([], [C.Series("A", [1])]),
            (["a"], []),
            (["a", "b"], [C.Series("A", [None, None])]),
            (["a"], [C.Series("A", [math.nan])]),
        ],
    )
    def test_nothing_to_draw_says_so(self, labels, series):
        svg = self.chart(labels=labels, series=series)
        assert "No figures to show yet" in svg and 'role="img"' in svg

    def test_negative_values_extend_the_scale_below_zero(self):
        svg = self.chart(labels=["a", "b"], series=[C.Series("A", [-5, 5])])
        assert "-5" in texts(svg) or "-6" in texts(svg) or "-10" in texts(svg)


class TestBarChart:
    CATS = [
        "MSK physiotherapy",
        "Pain management programme",
        "Talking therapies (long-term conditions)",
        "Social prescribing",
    ]

    def chart(
        self, categories: list[str] | None = None, series: list[C.Series] | None = None
    ) -> str:
        return str(
            C.bar_chart(
                categories if categories is not None else self.CATS,
                series
                if series is not None
                else [
                    C.Series("Loops", [12.5, 30, 8, 0]),
                    C.Series("Stalls", [40, 22.25, None, 5]),
                ],
                title="By category",
                desc="Which",
                x_label="per 1,000",
                id_prefix="c",
            )
        )

    def test_each_value_is_a_bar_labelled_with_its_figure(self):
        svg = self.chart()
        assert svg.count('height="14"') == 7  # one bar per value present
        words = texts(svg)
        for v in ("12.5", "30", "8", "0", "40", "22.2", "5"):
            assert v in words

    def test_a_missing_value_says_no_figure(self):
        svg = self.chart()
        assert "no figure" in texts(svg)
        assert "<title>Stalls, Talking therapies (long-term conditions): –</title>" in svg

    def test_series_are_told_apart_by_pattern_as_well_as_colour(self):
        svg = self.chart()
        assert '<pattern id="c-fill1"' in svg and 'fill="url(#c-fill1)"' in svg
        assert 'fill="#005eb8"' in svg

    def test_long_category_names_are_shortened_on_the_chart_but_whole_in_tooltips(self):
        svg = self.chart()
        assert "Talking therapies (long-term …" in texts(svg)
        assert "Loops, Talking therapies (long-term conditions): 8" in svg

    def test_negative_bars_grow_left_from_zero(self):
        svg = self.chart(["a"], [C.Series("A", [-4])])
        [bar] = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="14"', svg)
        zero = re.search(r'<line x1="([\d.]+)"[^>]*stroke="#212b32"', svg)
        assert zero and math.isclose(
            float(bar[0]) + float(bar[1]), float(zero.group(1)), abs_tol=0.2
        )

    @pytest.mark.parametrize(
        "cats,series", [([], [C.Series("A", [])]), (["a"], [C.Series("A", [None])])]
    )
    def test_nothing_to_draw_says_so(self, cats, series):
        assert "No figures to show yet" in self.chart(cats, series)

    def test_four_series_each_have_their_own_look(self):
        svg = self.chart(["a"], [C.Series(n, [i + 1]) for i, n in enumerate("ABCD")])
        for i in (1, 2, 3):
            assert f'<pattern id="c-fill{i}"' in svg


class TestDataTable:
    def test_a_row_per_label_and_a_column_per_series_with_headers_scoped(self):
        html = str(
            C.data_table(
                ["Jan", "Feb"],
                [C.Series("Loops", [1.5, None]), C.Series("Referrals", [200, 180])],
                caption="By month",
                label_header="Month",
                table_id="t",
            )
        )
        assert html.startswith('<table class="table data-table" id="t">')
        assert '<caption id="t-caption">By month</caption>' in html
        assert '<th scope="col">Month</th>' in html
        assert '<th scope="col" class="numeric">Loops</th>' in html
        assert re.findall(r'<th scope="row">(\w+)</th>', html) == ["Jan", "Feb"]
        assert re.findall(r'<td class="numeric">([^<]*)</td>', html) == ["1.5", "200", "–", "180"]

    def test_a_format_of_ones_own(self):
        html = str(
            C.data_table(
                ["x"],
                [C.Series("A", [0.123])],
                caption="c",
                label_header="L",
                format_value=lambda v: f"{v:.0%}",
            )
        )
        assert '<td class="numeric">12%</td>' in html and 'id="' not in html


def test_text_from_data_is_escaped_everywhere():
    evil = '<img src=x onerror="alert(1)">'
    line = str(
        C.line_chart(
            [evil],
            [C.Series(evil, [1])],
            title=evil,
            desc=evil,
            y_label=evil,
            id_prefix='"><script>',
        )
    )
    bar = str(C.bar_chart([evil], [C.Series(evil, [1])], title=evil, desc=evil, x_label=evil))
    table = str(
        C.data_table([evil], [C.Series(evil, [1])], caption=evil, label_header=evil, table_id='"x')
    )
    for out in (line, bar, table):
        assert "<img" not in out and "<script" not in out and '""' not in out
        assert "&lt;img" in out
