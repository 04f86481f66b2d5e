"""The journey timeline (services/notifications/dashboard/timeline.py, drawn by
timeline_svg.py, in the words of labels.py): pure, so plain unit tests, many cases: how
episodes become lanes, tracks, segments, endings, links and evidence marks; the table
alternative and the summary; the time axis; the SVG's accessible name, text labels and
escaping; and input that is malformed in every way a query could return it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.dashboard import labels as L
from services.notifications.dashboard import timeline as T
from services.notifications.dashboard import timeline_svg as S
from workflows.journeys.state import Episode, Step

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def ep(
    rid: str,
    category: str,
    *steps: tuple[str, float] | tuple[str, float, str],
    service_id: str | None = None,
) -> dict[str, Any]:
    return {
        "referral_id": rid,
        "category": category,
        "service_id": service_id or f"svc-{category}",
        "from_org": "GP-A81001",
        "to_org": "ORG-1",
        "priority": "routine",
        "steps": [
            {
                "state": s[0],
                "at": ago(s[1]),
                "event_id": f"e-{rid}-{i}",
                "event_type": f"uk.waymark.referral.{s[0]}",
                "reason": s[2] if len(s) > 2 else None,
            }
            for i, s in enumerate(steps)
        ],
    }


def svg_of(tl: T.Timeline, prefix: str = "tl") -> str:
    return str(S.render_svg(tl, id_prefix=prefix))


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


class TestBuildingTracks:
    def test_no_episodes_is_an_empty_timeline_that_says_so(self):
        for episodes in (None, [], ()):
            tl = T.build(episodes, now=NOW)
            assert tl.empty and tl.tracks == [] and tl.links == () and tl.marks == ()
            assert tl.summary == "No referrals are recorded in this journey yet."

    def test_an_open_referral_is_one_ongoing_segment_up_to_now(self):
        tl = T.build([ep("r1", "msk_physiotherapy", ("submitted", 20))], now=NOW)
        [track] = tl.tracks
        [seg] = track.segments
        assert (track.number, track.referral_id, track.ending) == (1, "r1", None)
        assert seg.state == "submitted" and seg.ongoing and seg.end == NOW
        assert seg.length == timedelta(days=20) and seg.is_wait

    def test_each_state_runs_until_the_next_one(self):
        tl = T.build(
            [
                ep(
                    "r1",
                    "pain_management_programme",
                    ("submitted", 30),
                    ("accepted", 25),
                    ("booked", 10),
                )
            ],
            now=NOW,
        )
        segs = tl.tracks[0].segments
        assert [(s.state, s.ongoing) for s in segs] == [
            ("submitted", False),
            ("accepted", False),
            ("booked", True),
        ]
        assert segs[0].end == segs[1].start and segs[1].end == segs[2].start
        assert [s.length.days for s in segs] == [5, 15, 10]

    def test_steps_that_arrived_out_of_order_are_put_in_time_order(self):
        e = ep("r1", "msk_physiotherapy", ("booked", 5), ("submitted", 30), ("accepted", 20))
        tl = T.build([e], now=NOW)
        assert [s.state for s in tl.tracks[0].segments] == ["submitted", "accepted", "booked"]

    @pytest.mark.parametrize(
        "state,bounce",
        [("returned", True), ("rejected", True), ("cancelled", True), ("discharged", False)],
    )
    def test_an_ending_closes_the_referral_and_says_whether_it_bounced(self, state, bounce):
        tl = T.build(
            [ep("r1", "msk_physiotherapy", ("submitted", 30), (state, 25, "some-reason"))], now=NOW
        )
        track = tl.tracks[0]
        assert track.ending is not None
        assert (track.ending.state, track.ending.bounce, track.ending.reason) == (
            state,
            bounce,
            "some-reason",
        )
        assert not track.segments[-1].ongoing
        assert track.end == track.ending.at
        assert tl.bounces == (1 if bounce else 0)

    def test_nothing_after_an_ending_is_drawn_for_that_referral(self):
        tl = T.build(
            [ep("r1", "msk_physiotherapy", ("submitted", 30), ("rejected", 25), ("accepted", 20))],
            now=NOW,
        )
        assert [s.state for s in tl.tracks[0].segments] == ["submitted"]
        assert tl.tracks[0].ending.state == "rejected"  # type: ignore[union-attr]

    def test_a_referral_whose_only_step_is_an_ending_has_no_segments(self):
        tl = T.build([ep("r1", "crisis", ("cancelled", 3))], now=NOW)
        track = tl.tracks[0]
        assert track.segments == () and track.start == track.end == track.ending.at  # type: ignore[union-attr]

    def test_a_step_in_the_future_does_not_run_backwards(self):
        tl = T.build([ep("r1", "msk_physiotherapy", ("booked", -2))], now=NOW)
        seg = tl.tracks[0].segments[0]
        assert seg.end == seg.start and seg.length == timedelta(0)

    def test_referrals_are_numbered_in_the_order_they_started_ties_by_id(self):
        tl = T.build(
            [
                ep("zz", "crisis", ("submitted", 5)),
                ep("bb", "crisis", ("submitted", 10)),
                ep("aa", "crisis", ("submitted", 5)),
            ],
            now=NOW,
        )
        assert [(t.number, t.referral_id) for t in tl.tracks] == [(1, "bb"), (2, "aa"), (3, "zz")]

    def test_lanes_are_categories_in_order_of_first_appearance(self):
        tl = T.build(
            [
                ep("r1", "msk_physiotherapy", ("submitted", 50)),
                ep("r2", "talking_therapies_ltc", ("submitted", 40)),
                ep("r3", "msk_physiotherapy", ("submitted", 10)),
            ],
            now=NOW,
        )
        assert [
            (lane.category, lane.label, [t.number for t in lane.tracks]) for lane in tl.lanes
        ] == [
            ("msk_physiotherapy", "MSK physiotherapy", [1, 3]),
            ("talking_therapies_ltc", "Talking therapies (long-term conditions)", [2]),
        ]

    def test_the_workflows_own_episode_objects_are_accepted_too(self):
        e = Episode(
            referral_id="r1",
            service_id="svc-1",
            category="peer_support",
            to_org="PEER-1",
            from_org="GP-1",
            priority="urgent",
            referred_from=None,
            steps=[
                Step(
                    state="submitted",
                    at=ago(9),
                    event_id="e1",
                    event_type="uk.waymark.referral.submitted",
                ),
                Step(
                    state="returned",
                    at=ago(2),
                    event_id="e2",
                    event_type="uk.waymark.referral.returned",
                    reason="refer-elsewhere",
                ),
            ],
        )
        tl = T.build([e], now=NOW)
        track = tl.tracks[0]
        assert (track.category, track.priority, track.ending.reason) == (  # type: ignore[union-attr]
            "peer_support",
            "urgent",
            "refer-elsewhere",
        )

    def test_highlighted_referrals_are_marked(self):
        tl = T.build(
            [ep("r1", "crisis", ("submitted", 5)), ep("r2", "crisis", ("submitted", 3))],
            now=NOW,
            highlight=["r2", "not-in-journey"],
        )
        assert [t.highlighted for t in tl.tracks] == [False, True]


class TestMalformedInput:
    @pytest.mark.parametrize(
        "bad",
        [
            "not a dict",
            42,
            None,
            {},
            {"referral_id": "r1"},
            {"referral_id": "r1", "steps": "x"},
            {"referral_id": "", "steps": [{"state": "submitted", "at": ago(1)}]},
            {"referral_id": 7, "steps": [{"state": "submitted", "at": ago(1)}]},
            {"referral_id": "r1", "steps": [{"state": "submitted", "at": "yesterday"}]},
            {"referral_id": "r1", "steps": [{"state": "", "at": ago(1)}]},
            {"referral_id": "r1", "steps": [{"state": None, "at": ago(1)}]},
            {"referral_id": "r1", "steps": [{"at": ago(1)}]},
            {"referral_id": "r1", "steps": ["submitted"]},
            {"referral_id": "r1", "steps": [{"state": "submitted", "at": 1234}]},
        ],
    )
    def test_an_entry_the_timeline_cannot_use_is_skipped(self, bad):
        good = ep("ok", "crisis", ("submitted", 2))
        tl = T.build([bad, good], now=NOW)
        assert [t.referral_id for t in tl.tracks] == ["ok"]
        assert "<svg" in svg_of(tl)

    def test_a_missing_category_is_unknown_and_still_drawn(self):
        e = ep("r1", "crisis", ("submitted", 2))
        del e["category"]
        tl = T.build([e], now=NOW)
        assert tl.lanes[0].category == "unknown" and tl.lanes[0].label == "Unknown"

    def test_naive_times_are_read_as_utc(self):
        e = {
            "referral_id": "r1",
            "category": "crisis",
            "steps": [{"state": "submitted", "at": "2026-03-01T12:00:00"}],
        }
        tl = T.build([e], now=datetime(2026, 3, 2, 12, 0))  # naive now too
        assert tl.tracks[0].segments[0].length == timedelta(days=1)
        assert tl.now.tzinfo is not None

    @pytest.mark.parametrize(
        "value,expected",
        [
            ("2026-01-05T09:00:00Z", datetime(2026, 1, 5, 9, tzinfo=UTC)),
            ("2026-01-05T09:00:00+01:00", datetime(2026, 1, 5, 8, tzinfo=UTC)),
            (" 2026-01-05 ", datetime(2026, 1, 5, tzinfo=UTC)),
            (datetime(2026, 1, 5), datetime(2026, 1, 5, tzinfo=UTC)),
            ("5 Jan", None),
            ("", None),
            (None, None),
            (3.5, None),
        ],
    )
    def test_parse_time(self, value, expected):
        assert L.parse_time(value) == expected

    def test_evidence_with_a_bad_time_is_skipped_but_keeps_its_number(self):
        tl = T.build(
            [ep("r1", "crisis", ("submitted", 5))],
            now=NOW,
            evidence=[
                {"referral_id": "r1", "at": "nonsense", "state": "x"},
                {"referral_id": "r1", "at": ago(5), "state": "submitted"},
                "not evidence",
            ],
        )
        assert [(m.number, m.state) for m in tl.marks] == [(2, "submitted")]


class TestLinks:
    def test_a_re_referral_to_the_same_kind_of_service_is_linked_over_others(self):
        tl = T.build(
            [
                ep("r1", "msk_physiotherapy", ("submitted", 100), ("returned", 95)),
                ep("r2", "pain_management_programme", ("submitted", 80)),
                ep("r3", "msk_physiotherapy", ("submitted", 20)),
            ],
            now=NOW,
        )
        [link] = tl.links
        assert (link.from_number, link.to_number, link.same_category, link.label) == (
            1,
            3,
            True,
            "re-referred",
        )
        assert link.started_at - link.ended_at == timedelta(days=75)

    def test_the_same_service_under_another_category_code_counts_as_a_re_referral(self):
        tl = T.build(
            [
                ep("r1", "a", ("submitted", 10), ("rejected", 9), service_id="svc-x"),
                ep("r2", "b", ("submitted", 5), service_id="svc-x"),
            ],
            now=NOW,
        )
        assert tl.links[0].same_category

    def test_ping_pong_between_two_kinds_shows_as_a_chain(self):
        tl = T.build(
            [
                ep("a1", "msk_physiotherapy", ("submitted", 120), ("cancelled", 118)),
                ep("b1", "talking_therapies_ltc", ("submitted", 60), ("cancelled", 58)),
                ep("a2", "msk_physiotherapy", ("submitted", 2)),
            ],
            now=NOW,
        )
        assert [(x.from_number, x.to_number, x.label) for x in tl.links] == [
            (1, 3, "re-referred"),
            (2, 3, "referred on"),
        ]

    def test_an_ending_nothing_followed_has_no_link_and_open_referrals_have_none(self):
        tl = T.build(
            [
                ep("r1", "crisis", ("submitted", 50)),
                ep("r2", "crisis", ("submitted", 40), ("discharged", 30)),
            ],
            now=NOW,
        )
        assert tl.links == ()

    def test_a_referral_that_started_before_the_ending_is_not_a_follow_on(self):
        tl = T.build(
            [
                ep("r1", "crisis", ("submitted", 50), ("returned", 10)),
                ep("r2", "crisis", ("submitted", 40)),
            ],
            now=NOW,
        )
        assert tl.links == ()


class TestSummaryAndTable:
    def test_the_summary_counts_referrals_kinds_endings_re_referrals_and_what_is_open(self):
        tl = T.build(
            [
                ep("r1", "msk_physiotherapy", ("submitted", 100), ("returned", 95)),
                ep("r2", "talking_therapies_ltc", ("submitted", 90), ("rejected", 88)),
                ep("r3", "msk_physiotherapy", ("submitted", 20)),
            ],
            now=NOW,
        )
        assert tl.summary == (
            "3 referrals to 2 kinds of service, from 22 Nov 2025 to 2 Mar 2026. "
            "Ended: 1 not accepted, 1 returned (2 without treatment). "
            "1 re-referral to the same kind of service after an ending. "
            "Open now: MSK physiotherapy: waiting for triage for 20 days."
        )

    def test_a_single_referral_is_said_in_the_singular(self):
        tl = T.build([ep("r1", "crisis", ("submitted", 1), ("discharged", 0.5))], now=NOW)
        assert tl.summary.startswith("1 referral to 1 kind of service, ")
        assert "Ended: 1 discharged." in tl.summary
        assert tl.summary.endswith("No referral is open now.")

    def test_rows_list_each_state_and_each_ending_with_notes(self):
        tl = T.build(
            [
                ep(
                    "r1",
                    "msk_physiotherapy",
                    ("submitted", 100),
                    ("returned", 95, "advice-and-guidance-given"),
                ),
                ep("r2", "msk_physiotherapy", ("submitted", 20), ("accepted", 10)),
            ],
            now=NOW,
            evidence=[
                {"referral_id": "r1", "at": ago(95), "state": "returned"},
                {"referral_id": "r2", "at": ago(20), "state": "submitted"},
            ],
        )
        rows = tl.rows()
        assert [(r.number, r.state) for r in rows] == [
            (1, "Waiting for triage"),
            (1, "Returned to the referrer"),
            (2, "Waiting for triage"),
            (2, "Accepted, waiting to be booked"),
        ]
        wait, ending, second, current = rows
        assert (wait.note, wait.length, wait.end is not None) == (
            "waiting",
            timedelta(days=5),
            True,
        )
        assert ending.length is None
        assert ending.note == (
            "ended without treatment (a bounce); reason: "
            "advice-and-guidance-given; re-referred as referral 2 75 days "
            "later; evidence 1"
        )
        assert second.note == "waiting; evidence 2"
        assert current.end is None and current.note == "waiting; current state"
        assert {r.service for r in rows} == {"MSK physiotherapy"}

    def test_booked_and_attended_are_not_waits(self):
        tl = T.build([ep("r1", "crisis", ("booked", 10), ("attended", 5))], now=NOW)
        assert [r.note for r in tl.rows()] == ["", "current state"]


class TestTimeAxis:
    @pytest.mark.parametrize(
        "span",
        [
            timedelta(minutes=3),
            timedelta(minutes=50),
            timedelta(hours=7),
            timedelta(days=2),
            timedelta(days=20),
            timedelta(days=100),
            timedelta(days=400),
            timedelta(days=3000),
        ],
    )
    def test_ticks_are_in_range_in_order_evenly_few_and_labelled(self, span):
        start = datetime(2025, 6, 14, 9, 37, tzinfo=UTC)
        ticks = S.time_ticks(start, start + span)
        assert 1 <= len(ticks) <= 9
        times = [t for t, _ in ticks]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all(start <= t <= start + span for t in times)
        assert all(label for _, label in ticks)

    def test_months_are_labelled_with_the_year_at_the_start_and_in_january(self):
        start = datetime(2025, 9, 20, tzinfo=UTC)
        labels = [label for _, label in S.time_ticks(start, start + timedelta(days=200))]
        assert labels[0] == "Oct 2025" and "Jan 2026" in labels and "Nov" in labels

    def test_days_fall_on_uk_midnight_and_weeks_on_mondays(self):
        start = datetime(2026, 1, 7, 15, tzinfo=UTC)
        ticks = S.time_ticks(start, start + timedelta(days=40))
        for t, _ in ticks:
            local = t.astimezone(L.UK)
            assert (local.hour, local.minute, local.weekday()) == (0, 0, 0)

    def test_short_spans_are_in_hours_and_minutes_with_the_date_once(self):
        start = datetime(2026, 1, 7, 10, 1, 30, tzinfo=UTC)
        labels = [label for _, label in S.time_ticks(start, start + timedelta(minutes=5))]
        assert labels[0] == "7 Jan 10:02" and labels[1] == "10:03"

    def test_no_span_no_ticks(self):
        assert S.time_ticks(NOW, NOW) == [] and S.time_ticks(NOW, NOW - timedelta(1)) == []

    def test_the_timeline_spans_its_events_and_now_with_a_margin_and_ten_minutes_at_least(self):
        tl = T.build([ep("r1", "crisis", ("submitted", 30))], now=NOW)
        assert tl.start < NOW - timedelta(days=30) and tl.end > NOW
        brief = T.build([ep("r1", "crisis", ("submitted", 0.0001))], now=NOW)
        assert brief.end - brief.start >= timedelta(minutes=10)


class TestWords:
    @pytest.mark.parametrize(
        "delta,long,short",
        [
            (timedelta(0), "0 minutes", "0 min"),
            (timedelta(seconds=30), "1 minute", "0 min"),
            (timedelta(minutes=1), "1 minute", "1 min"),
            (timedelta(minutes=59), "59 minutes", "59 min"),
            (timedelta(hours=1), "1 hour", "1 h"),
            (timedelta(hours=23), "23 hours", "23 h"),
            (timedelta(days=1), "1 day", "1 d"),
            (timedelta(days=45, hours=5), "45 days", "45 d"),
            (timedelta(days=-3), "0 minutes", "0 min"),
        ],
    )
    def test_durations(self, delta, long, short):
        assert L.duration_text(delta) == long and L.short_duration(delta) == short

    @pytest.mark.parametrize(
        "code,words",
        [
            ("msk_physiotherapy", "MSK physiotherapy"),
            ("test_fast_triage", "Test fast triage"),
            ("", "Unknown"),
        ],
    )
    def test_category_labels(self, code, words):
        assert L.category_label(code) == words

    @pytest.mark.parametrize(
        "code,words",
        [
            ("did_not_attend", "Did not attend"),
            ("rejected", "Not accepted"),
            ("some_new_state", "Some new state"),
            ("", "Unknown"),
        ],
    )
    def test_state_labels(self, code, words):
        assert L.state_label(code) == words

    def test_uk_dates_follow_summer_time(self):
        assert L.when_text(datetime(2026, 7, 1, 23, 30, tzinfo=UTC)) == "2 Jul 2026, 00:30"
        assert L.day_text(datetime(2026, 1, 1, 23, 30, tzinfo=UTC)) == "1 Jan 2026"


class TestTheSvg:
    def journey(self) -> T.Timeline:
        return T.build(
            [
                ep("r1", "msk_physiotherapy", ("submitted", 100), ("returned", 95)),
                ep(
                    "r2",
                    "pain_management_programme",
                    ("submitted", 80),
                    ("accepted", 70),
                    ("booked", 50),
                    ("attended", 40),
                    ("discharged", 30),
                ),
                ep("r3", "talking_therapies_ltc", ("submitted", 60), ("rejected", 58)),
                ep(
                    "r4",
                    "social_prescribing",
                    ("submitted", 45),
                    ("on_hold", 40),
                    ("booked", 20),
                    ("did_not_attend", 15),
                    ("cancelled", 5),
                ),
                ep("r5", "msk_physiotherapy", ("submitted", 20)),
            ],
            now=NOW,
            highlight=["r5"],
            evidence=[
                {"referral_id": "r1", "at": ago(95), "state": "returned"},
                {"referral_id": "r5", "at": ago(20), "state": "submitted"},
            ],
        )

    def test_it_is_an_image_labelled_by_its_own_title_and_description(self):
        tl = self.journey()
        svg = svg_of(tl, "journey")
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert 'role="img"' in svg and 'aria-labelledby="journey-title journey-desc"' in svg
        assert '<title id="journey-title">' in svg
        assert f'<desc id="journey-desc">{tl.summary}</desc>' in svg

    def test_every_ending_is_written_in_words_beside_its_shape(self):
        words = texts(svg_of(self.journey()))
        for label in ("Returned", "Not accepted", "Cancelled", "Discharged"):
            assert label in words

    def test_lanes_referrals_links_waits_evidence_and_today_are_written(self):
        tl = self.journey()
        words = texts(svg_of(tl))
        for label in (
            "MSK physiotherapy",
            "Pain management programme",
            "Referral 1",
            "Referral 5 (this alert)",
            "re-referred",
            "Today",
            "1",
            "2",
        ):
            assert label in words, label
        assert any(w.startswith("Triage wait") for w in words)
        assert "Booking wait 20 d" in words

    def test_waits_are_hatched_and_the_states_told_apart_by_fill(self):
        svg = svg_of(self.journey(), "p")
        assert 'fill="url(#p-wait)"' in svg and 'fill="url(#p-hold)"' in svg
        assert 'fill="url(#p-dna)"' in svg and 'fill="#005eb8"' in svg  # booked
        assert '<pattern id="p-wait"' in svg

    def test_every_segment_has_a_tooltip_naming_it(self):
        svg = svg_of(self.journey())
        assert (
            "<title>Referral 2: Booked from 11 Jan 2026, 12:00 to 21 Jan 2026, 12:00 "
            "(10 days)</title>" in svg
        )
        assert "Referral 5: Waiting for triage from 10 Feb 2026, 12:00 until now (20 days)" in svg

    def test_the_empty_timeline_is_still_a_labelled_image(self):
        svg = svg_of(T.build([], now=NOW), "e")
        assert 'role="img"' in svg and "No referrals are recorded" in svg

    def test_a_different_prefix_gives_different_ids(self):
        tl = self.journey()
        a, b = svg_of(tl, "one"), svg_of(tl, "two")
        ids = lambda s: set(re.findall(r'id="([^"]+)"', s))  # noqa: E731
        assert ids(a).isdisjoint(ids(b))

    def test_every_text_that_came_from_data_is_escaped(self):
        evil = '<script>alert("x")</script>'
        tl = T.build(
            [
                ep(f"r{evil}", evil, ("submitted", 10), ("returned", 5, evil)),
                ep("r2", evil, ("submitted", 2)),
            ],
            now=NOW,
            evidence=[{"referral_id": "r2", "at": ago(2), "state": evil}],
        )
        svg = str(S.render_svg(tl, id_prefix='x"><script>', title=evil))
        assert "<script>" not in svg and 'x"><' not in svg
        assert "&lt;script&gt;" in svg


def test_a_long_journey_is_drawn_whole():
    episodes = [
        ep(
            f"r{i:03d}",
            ["crisis", "msk_physiotherapy", "peer_support"][i % 3],
            ("submitted", 300 - i * 2),
            ("accepted", 299 - i * 2),
            ("returned", 298 - i * 2),
        )
        for i in range(60)
    ]
    tl = T.build(episodes, now=NOW)
    svg = svg_of(tl)
    assert len(tl.tracks) == 60 and len(tl.lanes) == 3
    assert svg.count("<rect") >= 60 * 2
