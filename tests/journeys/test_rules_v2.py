"""Alert rules version 2 (issue #15) as plain unit tests: each defect the issue found, and each
new or changed rule, with the cases either side of it. No Temporal, no database, no clock.

Dates: 5 January 2026 is a Monday; British Summer Time 2026 runs from 29 March to 25 October.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from shared.vocabulary import RISK_SEVERITY
from tests.journeys.test_rules import (
    HOUR,
    T0,
    act,
    alert_for,
    assess,
    at,
    changed,
    ev,
    new_state,
    raised,
    refer,
)
from workflows.journeys.rules import (
    apply_action,
    apply_assessment,
    apply_plan_activity,
    evaluate,
    load_rules,
    next_wake,
)
from workflows.journeys.rules_v2 import runs
from workflows.journeys.rules_v2_care import severities_agree
from workflows.journeys.stalls import stall_deadlines
from workflows.journeys.state import AlertChange, JourneyState, PlanActivity
from workflows.journeys.words import day, days_between, listing, plural

V2 = dataclasses.replace(load_rules(), bands_from_vocabulary=True, version=2)
V1 = dataclasses.replace(load_rules(), bands_from_vocabulary=True)
DAY = timedelta(days=1)
TT, MSK, PAIN, SP, PEER = (
    "talking_therapies_ltc",
    "msk_physiotherapy",
    "pain_management_programme",
    "social_prescribing",
    "peer_support",
)


def rules_raised(state: JourneyState, now: datetime, rules=V2) -> set[str]:  # noqa: ANN001
    evaluate(state, rules, now)
    return {a.rule for a in state.alerts}


def course(
    state: JourneyState,
    rid: str,
    start: datetime,
    *,
    category: str = MSK,
    sessions: int = 3,
    outcome: str = "treatment-completed",
    **kw: object,
) -> datetime:
    """A referral accepted and seen `sessions` times a week apart, then discharged; the
    discharge time."""
    refer(state, rid, ("submitted", start), ("accepted", start + 2 * DAY), category=category, **kw)
    t = start + 7 * DAY
    for _ in range(sessions):
        refer(state, rid, ("booked", t - 3 * DAY), category=category, **kw)
        refer(state, rid, ("attended", t), category=category, **kw)
        t += 7 * DAY
    refer(state, rid, ("discharged", t), category=category, reason=outcome, **kw)
    return t


# --- defect 2: ordinary treatment flagged as looping --------------------------------------------


class TestOrdinaryCareRaisesNothing:
    def test_one_physiotherapy_referral_with_three_sessions_is_not_frequent_contact(self):
        state = new_state()
        end = course(state, "r1", T0, sessions=3)
        assert rules_raised(state, end + HOUR) == set()
        # the same history under version 1 counted the sessions (kept for replay only)
        assert "looping.frequent_contact" in rules_raised(state, end + HOUR, V1)

    @pytest.mark.parametrize("sessions", [6, 10, 20])
    def test_long_courses_are_one_episode(self, sessions):
        state = new_state()
        end = course(state, "r1", T0, sessions=sessions)
        assert rules_raised(state, end + HOUR) == set()

    def test_advice_and_guidance_then_the_referral_advised_is_the_pathway_working(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("returned", T0 + 3 * DAY),
            category=PAIN,
            reason="advice-and-guidance-given",
        )
        end = course(state, "r2", T0 + 20 * DAY, category=PAIN)
        assert rules_raised(state, end + HOUR) == set()

    def test_manage_in_primary_care_then_referral_is_not_a_re_referral(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("returned", T0 + 3 * DAY),
            category=PAIN,
            reason="manage-in-primary-care",
        )
        refer(state, "r2", ("submitted", T0 + 40 * DAY), category=PAIN)
        assert "looping.re_referral" not in rules_raised(state, T0 + 41 * DAY)

    @pytest.mark.parametrize(
        "outcome", ["goals-met", "treatment-completed", "self-management", "onward-referral"]
    )
    def test_relapse_after_treatment_is_not_a_loop(self, outcome):
        state = new_state()
        end = course(state, "r1", T0, outcome=outcome)
        refer(state, "r2", ("submitted", end + 83 * DAY))
        assert rules_raised(state, end + 84 * DAY) == set()

    @pytest.mark.parametrize(
        ("state_", "reason"),
        [
            ("rejected", "patient-declined"),
            ("cancelled", "patient-request"),
            ("rejected", "duplicate-referral"),
            ("cancelled", "referred-in-error"),
        ],
    )
    def test_the_persons_choice_or_an_administrative_ending_is_not_a_loop(self, state_, reason):
        state = new_state()
        refer(state, "r1", ("submitted", T0), (state_, T0 + 2 * DAY), category=TT, reason=reason)
        refer(state, "r2", ("submitted", T0 + 30 * DAY), category=TT)
        assert rules_raised(state, T0 + 31 * DAY) == set()

    def test_declining_further_care_raises_nothing_later(self):
        state = new_state()
        end = course(state, "r1", T0, sessions=1, outcome="patient-declined-further-care")
        assert rules_raised(state, end + 200 * DAY) == set()

    def test_parallel_care_in_two_categories_raises_nothing(self):
        state = new_state()
        course(state, "r1", T0, category=MSK, sessions=4)
        end = course(state, "r2", T0 + DAY, category=TT, sessions=4)
        assert rules_raised(state, end + HOUR) == set()


# --- re-referral after a door closed ------------------------------------------------------------


class TestReReferral:
    @pytest.mark.parametrize(
        ("state_", "reason"),
        [
            ("rejected", "does-not-meet-criteria"),
            ("rejected", "not-appropriate-for-service"),
            ("returned", "refer-elsewhere"),
            ("rejected", None),
            ("returned", None),
        ],
    )
    def test_a_referral_back_after_a_door_closed_is_a_loop(self, state_, reason):
        state = new_state()
        refer(state, "r1", ("submitted", T0), (state_, T0 + 3 * DAY), category=TT, reason=reason)
        refer(state, "r2", ("submitted", T0 + 17 * DAY), category=TT)
        a = raised(evaluate(state, V2, T0 + 18 * DAY), "looping.re_referral")
        assert len(a) == 1 and a[0].referral_id == "r2"
        assert "14 days after talking therapies" in a[0].explanation

    def test_after_missed_appointments_is_a_loop(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("accepted", T0 + DAY),
            ("booked", T0 + 2 * DAY),
            ("did_not_attend", T0 + 9 * DAY),
            category=TT,
        )
        refer(
            state,
            "r1",
            ("discharged", T0 + 10 * DAY),
            category=TT,
            reason="did-not-attend-discharged",
        )
        refer(state, "r2", ("submitted", T0 + 30 * DAY), category=TT)
        a = alert_for(_evaluated(state, T0 + 31 * DAY), "looping.re_referral")
        assert "discharged after missed appointments" in a.explanation

    def test_outside_the_window_is_not_a_loop(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=TT)
        refer(state, "r2", ("submitted", T0 + DAY + 183 * DAY), category=TT)
        assert "looping.re_referral" not in rules_raised(state, T0 + 400 * DAY)


def _evaluated(state: JourneyState, now: datetime) -> JourneyState:
    evaluate(state, V2, now)
    return state


# --- defect 3: closed doors and no next step ----------------------------------------------------


class TestClosedDoors:
    def _three_doors(self, gap: int = 12) -> tuple[JourneyState, datetime]:
        """Three services each turn the person away; each next referral is made 10 days after
        the last door closed (within the grace: the next door being tried)."""
        state = new_state()
        t = T0
        for i, cat in enumerate((PAIN, TT, SP)):
            refer(
                state,
                f"r{i}",
                ("submitted", t),
                ("rejected", t + 2 * DAY),
                category=cat,
                reason="does-not-meet-criteria",
                service_name=f"Service {i}",
            )
            t += gap * DAY
        return state, t - gap * DAY + 2 * DAY  # the last closure

    def test_three_services_closing_within_90_days_with_nothing_open_is_closed_doors(self):
        state, last = self._three_doors()
        changes = evaluate(state, V2, last + 14 * DAY)
        a = raised(changes, "looping.closed_doors")
        assert len(a) == 1
        assert a[0].severity == "high" and a[0].kind == "looping"
        assert a[0].explanation.startswith(
            "3 services closed the door without treatment in "
            "24 days, and nothing is open: Service 0 did not "
            "accept the referral (does not meet the criteria)"
        )
        assert [e.referral_id for e in a[0].evidence] == ["r0", "r1", "r2"]

    def test_within_the_grace_nothing_yet_and_the_wake_is_the_end_of_the_grace(self):
        state, last = self._three_doors()
        assert "looping.closed_doors" not in rules_raised(state, last + 13 * DAY)
        assert next_wake(state, V2, last + 13 * DAY) == last + 14 * DAY

    def test_a_referral_made_within_the_grace_is_the_next_door_being_tried(self):
        state, last = self._three_doors()
        refer(state, "r9", ("submitted", last + 5 * DAY), category=PEER)
        assert "looping.closed_doors" not in rules_raised(state, last + 30 * DAY)

    def test_something_open_is_not_closed_doors(self):
        state, last = self._three_doors()
        refer(state, "r9", ("submitted", T0 - DAY), category=PEER)  # open throughout
        assert "looping.closed_doors" not in rules_raised(state, last + 30 * DAY)

    def test_two_doors_then_nothing_for_longer_than_the_grace_is_closed_doors_at_two(self):
        state, last = self._three_doors(gap=20)  # 18 days with nothing after the second
        evaluate(state, V2, last + 14 * DAY)
        doors = [a for a in state.alerts if a.rule == "looping.closed_doors"]
        assert [len(a.evidence) for a in doors] == [2]

    def test_doors_further_apart_than_the_window_are_not_a_run(self):
        state, last = self._three_doors(gap=100)
        assert "looping.closed_doors" not in rules_raised(state, last + 30 * DAY)

    def test_two_closures_by_the_same_service_are_one_door(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=TT)
        refer(state, "r2", ("submitted", T0 + 5 * DAY), ("rejected", T0 + 6 * DAY), category=TT)
        assert "looping.closed_doors" not in rules_raised(state, T0 + 40 * DAY)

    def test_treatment_or_advice_is_not_a_closed_door(self):
        state = new_state()
        course(state, "r1", T0, category=MSK, sessions=1)
        refer(
            state,
            "r2",
            ("submitted", T0 + 30 * DAY),
            ("returned", T0 + 31 * DAY),
            category=PAIN,
            reason="advice-and-guidance-given",
        )
        assert "looping.closed_doors" not in rules_raised(state, T0 + 60 * DAY)

    def test_a_backlog_is_judged_once_settled_so_the_next_door_arriving_late_counts(self):
        """The evaluation's false positive: the closures arrive first, the referral made
        within the grace a moment later; closed doors waits for the journey to settle."""
        state, last = self._three_doors()
        late_now = last + 300 * DAY
        evaluate(state, V2, late_now, stalls=False)  # events still arriving
        assert "looping.closed_doors" not in {a.rule for a in state.alerts}
        refer(state, "r9", ("submitted", last + 5 * DAY), category=PEER)
        evaluate(state, V2, late_now)  # settled
        assert "looping.closed_doors" not in {a.rule for a in state.alerts}

    def test_the_same_history_evaluated_a_year_later_gives_the_same_alert(self):
        soon, last = self._three_doors()
        late, _ = self._three_doors()
        evaluate(soon, V2, last + 14 * DAY)
        evaluate(late, V2, last + 400 * DAY)
        assert {a.key for a in soon.alerts if a.kind == "looping"} == {
            a.key for a in late.alerts if a.kind == "looping"
        }


class TestNoNextStep:
    @pytest.mark.parametrize(
        ("steps", "reason"),
        [
            (("rejected",), "not-appropriate-for-service"),
            (("returned",), "refer-elsewhere"),
            (("accepted", "booked", "did_not_attend", "discharged"), "did-not-attend-discharged"),
            (("cancelled",), "service-withdrawn"),
        ],
    )
    def test_a_door_closed_then_nothing_for_eight_weeks(self, steps, reason):
        state = new_state()
        refer(state, "r1", ("submitted", T0), category=PAIN)
        t = T0
        for s in steps:
            t += DAY
            refer(state, "r1", (s, t), category=PAIN, reason=reason if s == steps[-1] else None)
        assert "stalled.no_next_step" not in rules_raised(state, t + 55 * DAY)
        assert next_wake(state, V2, t + 55 * DAY) == t + 56 * DAY
        a = raised(evaluate(state, V2, t + 60 * DAY), "stalled.no_next_step")
        assert len(a) == 1
        assert a[0].recipient_orgs == ["GP-A81001"]  # the referrer, and the coordinators
        assert a[0].kind == "stalled" and a[0].severity == "high"
        assert (
            "no new referral or change to the care plan followed within 8 weeks" in a[0].explanation
        )

    @pytest.mark.parametrize("reason", ["advice-and-guidance-given", None])
    def test_treatment_advice_or_choice_is_not_dropped(self, reason):
        state = new_state()
        if reason:
            refer(state, "r1", ("submitted", T0), ("returned", T0 + DAY), reason=reason)
        else:
            course(state, "r1", T0)
        refer(
            state,
            "r2",
            ("submitted", T0),
            ("rejected", T0 + DAY),
            category=TT,
            reason="patient-declined",
        )
        assert "stalled.no_next_step" not in rules_raised(state, T0 + 200 * DAY)

    def test_a_new_referral_resolves_it(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=PAIN)
        evaluate(state, V2, T0 + 60 * DAY)
        refer(state, "r2", ("submitted", T0 + 61 * DAY), category=TT, service_name="Talking Space")
        changes = evaluate(state, V2, T0 + 61 * DAY + HOUR)
        done = changed(changes, "resolved", "stalled.no_next_step")
        assert len(done) == 1
        assert done[0].resolution == (
            f"a next step followed: referred to Talking Space on {day(T0 + 61 * DAY)}"
        )

    def test_a_referral_made_in_error_is_not_a_next_step(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=PAIN)
        refer(
            state,
            "r2",
            ("submitted", T0 + 5 * DAY),
            ("cancelled", T0 + 6 * DAY),
            category=TT,
            reason="referred-in-error",
        )
        assert "stalled.no_next_step" in rules_raised(state, T0 + 60 * DAY)

    def test_a_care_plan_change_is_a_next_step(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=PAIN)
        apply_plan_activity(state, PlanActivity("plan-1", (T0 + 20 * DAY).isoformat()))
        assert "stalled.no_next_step" not in rules_raised(state, T0 + 100 * DAY)

    def test_another_referral_open_means_the_person_is_in_care(self):
        state = new_state()
        refer(state, "r0", ("submitted", T0 - DAY), ("accepted", T0), category=MSK)
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=PAIN)
        assert "stalled.no_next_step" not in rules_raised(state, T0 + 100 * DAY)


# --- defect 4: stall rules misapplied ------------------------------------------------------------


class TestReferralToTreatment:
    @pytest.mark.parametrize("category", [PAIN, TT, MSK, SP])
    def test_an_untriaged_referral_has_one_alert_not_two(self, category):
        state = new_state()
        refer(state, "r1", ("submitted", T0), category=category)
        assert rules_raised(state, T0 + 300 * DAY) == {"stalled.not_triaged"}

    @pytest.mark.parametrize(
        ("category", "rtt"), [(PAIN, True), (TT, True), (MSK, False), (SP, False), (PEER, False)]
    )
    def test_only_categories_whose_standard_it_is(self, category, rtt):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("accepted", T0 + DAY),
            ("booked", T0 + 2 * DAY),
            category=category,
            appointment_at=T0 + 200 * DAY,
        )
        ep = state.episodes[0]
        found = {d.rule: d.due for d in stall_deadlines(ep, V2)}
        assert ("stalled.rtt_breach" in found) is rtt
        if rtt:
            assert found["stalled.rtt_breach"] == T0 + timedelta(weeks=18)
        # version 1 applied it everywhere (kept for replay)
        assert "stalled.rtt_breach" in {d.rule for d in stall_deadlines(ep, V1)}

    def test_the_clock_stops_at_the_first_attendance(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("accepted", T0 + DAY),
            ("booked", T0 + 2 * DAY),
            ("attended", T0 + 20 * DAY),
            category=PAIN,
        )
        assert "stalled.rtt_breach" not in {d.rule for d in stall_deadlines(state.episodes[0], V2)}


# --- defect 5: windows on event time -------------------------------------------------------------


class TestEventTime:
    def _returns(self) -> JourneyState:
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("returned", T0 + DAY),
            category=PAIN,
            reason="refer-elsewhere",
        )
        refer(
            state,
            "r2",
            ("submitted", T0 + 10 * DAY),
            ("returned", T0 + 12 * DAY),
            category=TT,
            reason="insufficient-information",
        )
        return state

    def _contacts(self) -> JourneyState:
        state = new_state()
        for i, cat in enumerate((PAIN, TT, MSK, SP)):
            course(state, f"r{i}", T0 + 30 * i * DAY, category=cat, sessions=1)
        return state

    @pytest.mark.parametrize("history", ["_returns", "_contacts"])
    def test_replaying_later_gives_the_same_loop_alerts(self, history):
        # once every wait in the history has passed (8 weeks at most), when the history is
        # evaluated makes no difference
        soon, late = getattr(self, history)(), getattr(self, history)()
        last = max(e.current.at for e in soon.episodes)
        evaluate(soon, V2, datetime.fromisoformat(last) + 57 * DAY)
        evaluate(late, V2, datetime.fromisoformat(last) + 500 * DAY)
        keys = {a.key for a in soon.alerts}
        assert keys and keys == {a.key for a in late.alerts}

    def test_version_1_measured_from_now_and_forgot(self):
        late = self._returns()
        evaluate(late, V1, T0 + 500 * DAY)
        assert late.alerts == []

    def test_a_run_of_returns_raises_once(self):
        state = self._returns()
        refer(state, "r3", ("submitted", T0 + 20 * DAY), ("returned", T0 + 22 * DAY), category=SP)
        evaluate(state, V2, T0 + 23 * DAY)
        assert len([a for a in state.alerts if a.rule == "looping.returned_repeatedly"]) == 1

    def test_returns_further_apart_than_the_window_are_not_repeated(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("returned", T0 + DAY), category=PAIN)
        refer(state, "r2", ("submitted", T0 + 190 * DAY), ("returned", T0 + 200 * DAY), category=TT)
        assert "looping.returned_repeatedly" not in rules_raised(state, T0 + 201 * DAY)

    def test_four_episodes_in_six_months_is_frequent_contact_with_exact_words(self):
        state = self._contacts()
        a = alert_for(_evaluated(state, T0 + 200 * DAY), "looping.frequent_contact")
        assert a.explanation == (
            "4 episodes of care in 90 days (5 January 2026 to 5 April 2026): referrals to the "
            "pain management programme, talking therapies, MSK physiotherapy and social "
            "prescribing."
        )

    def test_a_duplicate_found_after_the_alert_resolves_it(self):
        state = new_state()
        for i, cat in enumerate((PAIN, TT, MSK)):
            refer(state, f"r{i}", ("submitted", T0 + 30 * i * DAY), category=cat)
        refer(state, "dup", ("submitted", T0 + 100 * DAY), category=MSK)
        assert "looping.frequent_contact" in rules_raised(state, T0 + 100 * DAY + HOUR)
        refer(
            state,
            "dup",
            ("cancelled", T0 + 100 * DAY + 12 * HOUR),
            category=MSK,
            reason="duplicate-referral",
        )
        done = changed(evaluate(state, V2, T0 + 101 * DAY), "resolved", "looping.frequent_contact")
        assert len(done) == 1 and "duplicate or made in error" in (done[0].resolution or "")

    def test_duplicates_and_errors_are_not_episodes(self):
        state = new_state()
        for i, cat in enumerate((PAIN, TT, MSK)):
            course(state, f"r{i}", T0 + 30 * i * DAY, category=cat, sessions=1)
        refer(
            state,
            "r9",
            ("submitted", T0 + 100 * DAY),
            ("cancelled", T0 + 101 * DAY),
            category=SP,
            reason="duplicate-referral",
        )
        assert "looping.frequent_contact" not in rules_raised(state, T0 + 200 * DAY)


# --- ping-pong -------------------------------------------------------------------------------


class TestPingPong:
    def test_a_closed_b_closed_back_to_a(self):
        state = new_state()
        refer(state, "a", ("submitted", T0), ("rejected", T0 + 2 * DAY), category=PAIN)
        refer(
            state,
            "b",
            ("submitted", T0 + 5 * DAY),
            ("returned", T0 + 9 * DAY),
            category=TT,
            reason="refer-elsewhere",
        )
        refer(state, "c", ("submitted", T0 + 12 * DAY), category=PAIN)
        a = alert_for(_evaluated(state, T0 + 13 * DAY), "looping.ping_pong")
        assert a.referral_id == "c"
        assert [e.referral_id for e in a.evidence] == ["a", "b", "c"]

    def test_parallel_care_is_not_ping_pong(self):
        state = new_state()
        refer(state, "a", ("submitted", T0), ("accepted", T0 + DAY), category=PAIN)
        refer(state, "b", ("submitted", T0 + 5 * DAY), ("accepted", T0 + 6 * DAY), category=TT)
        refer(state, "c", ("submitted", T0 + 12 * DAY), category=PAIN)
        assert "looping.ping_pong" not in rules_raised(state, T0 + 13 * DAY)

    def test_b_still_open_when_sent_back_is_not_ping_pong(self):
        state = new_state()
        refer(state, "a", ("submitted", T0), ("rejected", T0 + 2 * DAY), category=PAIN)
        refer(state, "b", ("submitted", T0 + 5 * DAY), ("accepted", T0 + 6 * DAY), category=TT)
        refer(state, "c", ("submitted", T0 + 12 * DAY), category=PAIN)
        assert "looping.ping_pong" not in rules_raised(state, T0 + 13 * DAY)

    def test_cancelled_by_the_referrer_is_not_the_service_closing(self):
        state = new_state()
        refer(
            state,
            "a",
            ("submitted", T0),
            ("cancelled", T0 + 2 * DAY),
            category=PAIN,
            reason="no-longer-required",
        )
        refer(
            state,
            "b",
            ("submitted", T0 + 5 * DAY),
            ("cancelled", T0 + 9 * DAY),
            category=TT,
            reason="no-longer-required",
        )
        refer(state, "c", ("submitted", T0 + 12 * DAY), category=PAIN)
        assert "looping.ping_pong" not in rules_raised(state, T0 + 13 * DAY)

    def test_b_treated_then_a_is_sequenced_care(self):
        state = new_state()
        refer(
            state,
            "a",
            ("submitted", T0),
            ("returned", T0 + 2 * DAY),
            category=PAIN,
            reason="advice-and-guidance-given",
        )
        end = course(state, "b", T0 + 5 * DAY, category=TT, sessions=2)
        refer(state, "c", ("submitted", end + DAY), category=PAIN)
        assert rules_raised(state, end + 2 * DAY) == set()


# --- screening: item 9 and pathway prompts -------------------------------------------------------


class TestScreening:
    def test_item9_is_urgent_addressed_to_gp_and_plan_holder_with_true_evidence(self):
        state = new_state()
        event = assess("phq-1", T0, item9=None, band="moderate", total=14)
        event.safety_flag, event.registered_practice, event.holder_org = True, "A81001", "RTH"
        apply_assessment(state, event)
        a = raised(evaluate(state, V2, T0), "safety.phq9_item9")[0]
        assert (a.severity, a.kind) == ("urgent", "safety")
        assert a.recipient_orgs == ["A81001", "RTH"]
        assert a.evidence[0].detail == "PHQ-9 phq-1: item 9 answered above 0"
        assert "None" not in a.evidence[0].detail + a.explanation

    def test_item9_with_the_same_practice_and_holder_is_addressed_once(self):
        state = new_state()
        event = assess("phq-1", T0, item9=1)
        event.registered_practice = event.holder_org = "A81001"
        apply_assessment(state, event)
        assert raised(evaluate(state, V2, T0))[0].recipient_orgs == ["A81001"]

    @pytest.mark.parametrize("physio_open", [True, False])
    def test_start_back_high_is_a_pathway_prompt_saying_whether_physio_is_open(self, physio_open):
        state = new_state()
        if physio_open:
            refer(
                state,
                "r1",
                ("submitted", T0 - 10 * DAY),
                ("accepted", T0 - 9 * DAY),
                category=MSK,
                service_name="Riverside MSK",
            )
        apply_assessment(
            state, assess("sb-1", T0, instrument="STarT-Back", band="high", total=7, item9=None)
        )
        a = alert_for(_evaluated(state, T0), "pathway.start_back_high")
        assert (a.kind, a.severity) == ("pathway", RISK_SEVERITY["high_risk_band"])
        assert "psychologically informed support" in a.explanation
        assert ("A referral to Riverside MSK is open" in a.explanation) is physio_open
        assert ("No physiotherapy referral is open." in a.explanation) is not physio_open

    @pytest.mark.parametrize(
        ("instrument", "band", "total"), [("PHQ-9", "severe", 22), ("GAD-7", "severe", 17)]
    )
    def test_severe_mood_without_a_mental_health_referral(self, instrument, band, total):
        state = new_state()
        apply_assessment(
            state, assess("m-1", T0, instrument=instrument, band=band, total=total, item9=0)
        )
        a = alert_for(_evaluated(state, T0), "pathway.severe_mood")
        assert a.severity == "high"
        assert a.explanation == (
            f"{instrument} on 5 January 2026 is in the severe band (score "
            f"{total}), and no mental health referral (talking therapies "
            f"or the crisis service) is open."
        )

    def test_severe_mood_with_talking_therapies_open_prompts_nothing(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0 - 20 * DAY), ("accepted", T0 - 19 * DAY), category=TT)
        apply_assessment(state, assess("m-1", T0, band="severe", total=23, item9=0))
        assert rules_raised(state, T0) == set()

    @pytest.mark.parametrize(
        ("instrument", "band"),
        [("PHQ-9", "moderately_severe"), ("GAD-7", "moderate"), ("STarT-Back", "medium")],
    )
    def test_bands_below_high_risk_prompt_nothing(self, instrument, band):
        state = new_state()
        apply_assessment(state, assess("x-1", T0, instrument=instrument, band=band, item9=0))
        assert rules_raised(state, T0) == set()

    def test_severities_agree_with_the_care_plan(self):
        assert severities_agree(V2) == []
        wrong = dataclasses.replace(V2, severity=V2.severity | {"pathway.severe_mood": "urgent"})
        assert severities_agree(wrong) == ["pathway.severe_mood"]


# --- progressing ---------------------------------------------------------------------------------


class TestProgressing:
    def _re_referral(self) -> JourneyState:
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=TT)
        refer(state, "r2", ("submitted", T0 + 10 * DAY), category=TT, service_name="Talking Space")
        evaluate(state, V2, T0 + 10 * DAY + HOUR)
        return state

    def test_accepted_and_seen_since_moves_a_loop_alert_to_progressing(self):
        state = self._re_referral()
        refer(
            state,
            "r2",
            ("accepted", T0 + 12 * DAY),
            ("booked", T0 + 13 * DAY),
            ("attended", T0 + 20 * DAY),
            category=TT,
            service_name="Talking Space",
        )
        changes = evaluate(state, V2, T0 + 20 * DAY + HOUR)
        moved = changed(changes, "progressing")
        assert [a.rule for a in moved] == ["looping.re_referral"]
        a = moved[0]
        assert a.status == "progressing" and a.seq == 2
        assert a.progress == f"accepted and seen by Talking Space on {day(T0 + 20 * DAY)}"
        assert changed(evaluate(state, V2, T0 + 40 * DAY), "escalated") == []

    def test_accepted_but_not_yet_seen_stays_open(self):
        state = self._re_referral()
        refer(state, "r2", ("accepted", T0 + 12 * DAY), category=TT)
        assert changed(evaluate(state, V2, T0 + 12 * DAY + HOUR), "progressing") == []

    def test_an_alert_a_coordinator_took_on_stays_as_they_left_it(self):
        state = self._re_referral()
        alert = alert_for(state, "looping.re_referral")
        apply_action(state, act(alert.alert_id, "acknowledge", T0 + 11 * DAY))
        refer(state, "r2", ("accepted", T0 + 12 * DAY), ("attended", T0 + 20 * DAY), category=TT)
        assert changed(evaluate(state, V2, T0 + 21 * DAY), "progressing") == []
        assert alert.status == "acknowledged"

    def test_a_progressing_alert_can_still_be_acknowledged_and_resolved(self):
        state = self._re_referral()
        refer(state, "r2", ("accepted", T0 + 12 * DAY), ("attended", T0 + 20 * DAY), category=TT)
        evaluate(state, V2, T0 + 21 * DAY)
        alert = alert_for(state, "looping.re_referral")
        done: list[AlertChange] = apply_action(
            state, act(alert.alert_id, "acknowledge", T0 + 22 * DAY)
        )
        assert [c.change for c in done] == ["acknowledged"]

    def test_a_pathway_prompt_progresses_when_the_pathway_accepts_the_person(self):
        state = new_state()
        apply_assessment(state, assess("m-1", T0, band="severe", total=23, item9=0))
        evaluate(state, V2, T0)
        refer(state, "r1", ("submitted", T0 + 3 * DAY), category=TT)
        assert changed(evaluate(state, V2, T0 + 3 * DAY + HOUR), "progressing") == []
        refer(state, "r1", ("accepted", T0 + 5 * DAY), category=TT)
        moved = changed(evaluate(state, V2, T0 + 5 * DAY + HOUR), "progressing")
        assert [a.rule for a in moved] == ["pathway.severe_mood"]

    def test_a_pathway_referral_turned_down_leaves_the_prompt_open(self):
        state = new_state()
        apply_assessment(state, assess("m-1", T0, band="severe", total=23, item9=0))
        evaluate(state, V2, T0)
        refer(state, "r1", ("submitted", T0 + 3 * DAY), ("rejected", T0 + 4 * DAY), category=TT)
        assert changed(evaluate(state, V2, T0 + 5 * DAY), "progressing") == []

    def test_seen_on_an_older_parallel_referral_is_not_the_way_out_of_a_loop(self):
        state = new_state()
        refer(state, "p", ("submitted", T0 - 5 * DAY), ("accepted", T0 - 4 * DAY), category=MSK)
        refer(state, "r1", ("submitted", T0), ("rejected", T0 + DAY), category=TT)
        refer(state, "r2", ("submitted", T0 + 10 * DAY), category=TT)
        evaluate(state, V2, T0 + 10 * DAY + HOUR)
        refer(state, "p", ("booked", T0 + 11 * DAY), ("attended", T0 + 12 * DAY), category=MSK)
        assert changed(evaluate(state, V2, T0 + 12 * DAY + HOUR), "progressing") == []

    def test_frequent_contact_does_not_progress_when_the_person_is_seen(self):
        state = new_state()
        for i, cat in enumerate((PAIN, TT, MSK, SP)):
            refer(state, f"r{i}", ("submitted", T0 + 20 * i * DAY), category=cat)
        evaluate(state, V2, T0 + 61 * DAY)
        refer(state, "r3", ("accepted", T0 + 62 * DAY), ("attended", T0 + 70 * DAY), category=SP)
        assert changed(evaluate(state, V2, T0 + 71 * DAY), "progressing") == []

    def test_safety_alerts_never_progress(self):
        state = new_state()
        apply_assessment(state, assess("p-1", T0, item9=2))
        evaluate(state, V2, T0)
        refer(
            state,
            "r1",
            ("submitted", T0 + DAY),
            ("accepted", T0 + 2 * DAY),
            ("attended", T0 + 3 * DAY),
            category=TT,
        )
        assert changed(evaluate(state, V2, T0 + 3 * DAY + HOUR), "progressing") == []


# --- defect 7: words --------------------------------------------------------------------------


class TestWords:
    def test_a_fourteen_day_gap_is_fourteen_days_whatever_the_times(self):
        assert days_between(at(2026, 1, 5, 9), at(2026, 1, 19, 8)) == 14
        assert days_between(at(2026, 1, 5, 23, 59), at(2026, 1, 6, 0, 1)) == 1

    def test_dates_are_uk_local(self):
        # 23:30 UTC on 1 July 2026 is 00:30 on 2 July in London (BST); in January it is not
        assert day(at(2026, 7, 1, 23, 30)) == "2 July 2026"
        assert day(at(2026, 1, 1, 23, 30)) == "1 January 2026"
        assert days_between(at(2026, 7, 1, 22, 0), at(2026, 7, 1, 23, 30)) == 1

    @pytest.mark.parametrize(
        ("n", "word", "text"),
        [
            (1, "service", "1 service"),
            (2, "service", "2 services"),
            (0, "referral", "0 referrals"),
            (1, "day", "1 day"),
        ],
    )
    def test_plurals(self, n, word, text):
        assert plural(n, word) == text

    def test_listing(self):
        assert listing(["a"]) == "a"
        assert listing(["a", "b"]) == "a and b"
        assert listing(["a", "b", "c"]) == "a, b and c"

    def test_the_service_is_named_by_its_own_name(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("rejected", T0 + DAY),
            category=PAIN,
            service_name="Specialist Pain Clinic",
            reason="does-not-meet-criteria",
        )
        refer(
            state,
            "r2",
            ("submitted", T0 + 15 * DAY),
            category=PAIN,
            service_name="Specialist Pain Clinic",
        )
        a = alert_for(_evaluated(state, T0 + 16 * DAY), "looping.re_referral")
        assert a.explanation == (
            "Referred again to Specialist Pain Clinic on 20 January 2026, 14 days after "
            "Specialist Pain Clinic did not accept the referral (does not meet the criteria) "
            "on 6 January 2026."
        )
        assert "pain management programme" not in a.explanation

    def test_stall_texts_use_the_name_too(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), category=PAIN, service_name="Specialist Pain Clinic")
        a = alert_for(_evaluated(state, T0 + 30 * DAY), "stalled.not_triaged")
        assert a.explanation.startswith("Referred to Specialist Pain Clinic on 5 January 2026")


class TestRuns:
    def test_items_belong_to_one_run(self):
        t = [(T0 + i * DAY, i) for i in range(7)]
        found = runs(t, timedelta(days=10), lambda recent: len(recent) >= 3)
        assert [[x for _, x in run] for run in found] == [[0, 1, 2], [3, 4, 5]]

    def test_the_window_is_between_items(self):
        t = [(T0, 0), (T0 + 11 * DAY, 1), (T0 + 12 * DAY, 2)]
        found = runs(t, timedelta(days=10), lambda recent: len(recent) >= 2)
        assert [[x for _, x in run] for run in found] == [[1, 2]]


def test_an_event_with_a_name_keeps_it_when_a_later_event_has_none():
    state = new_state()
    refer(state, "r1", ("submitted", T0), service_name="Specialist Pain Clinic")
    refer(state, "r1", ("accepted", T0 + DAY))
    assert state.episodes[0].service_name == "Specialist Pain Clinic"


def test_ev_helper_knows_service_names():
    assert ev("r", "submitted", T0).service_name is None


def test_every_reason_the_referrals_service_takes_has_a_meaning_for_the_journey():
    """A new reason code in the referrals service without a closure outcome would quietly take
    the state's default (HAZ-076): the two lists are the same."""
    from services.referrals import domain
    from shared.vocabulary import CLOSURE_OUTCOMES, REASON_WORDS

    assert set(CLOSURE_OUTCOMES["rejected"]) == domain.REJECT_REASONS
    assert set(CLOSURE_OUTCOMES["returned"]) == domain.RETURN_REASONS
    assert set(CLOSURE_OUTCOMES["discharged"]) == domain.DISCHARGE_OUTCOMES
    assert set(CLOSURE_OUTCOMES["cancelled"]) == domain.CANCEL_REASONS
    every = set().union(*(set(v) for v in CLOSURE_OUTCOMES.values()))
    assert every <= set(REASON_WORDS)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('"pathway.severe_mood" = "urgent"', "differs from the care plan"),
        ('"looping.closed_doors" = "hgih"', "is not one of urgent, high, medium"),
    ],
)
def test_a_rules_file_that_contradicts_itself_is_refused_at_load(tmp_path, line, says):
    local = tmp_path / "local.toml"
    local.write_text(f"[severity]\n{line}\n")
    from workflows.journeys.rules import DEFAULT_RULES_FILE

    with pytest.raises(ValueError, match=says):
        load_rules(DEFAULT_RULES_FILE, local)
