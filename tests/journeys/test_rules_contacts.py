"""Contacts with care outside referrals (issue #17) as plain unit tests: what counts, the
frequent-attender, repeated-A&E-for-pain and unplanned-care-while-waiting rules either side of
each threshold, revisions, late backlogs, and one alert per problem. No Temporal, no database,
no clock.

Dates: 5 January 2026 is a Monday.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.events.encounters import EncounterRecorded
from shared.events.envelope import make_event
from tests.journeys.test_rules import T0, act, alert_for, new_state, raised, refer
from workflows.journeys.bridge import to_contact
from workflows.journeys.rules import apply_contact, evaluate, load_rules
from workflows.journeys.rules_contacts import AE_PAIN, FREQUENT, WHILE_WAITING, WITHDRAWN
from workflows.journeys.state import ContactEvent, JourneyState

RULES = dataclasses.replace(load_rules(), bands_from_vocabulary=True, version=2, contact_rules=True)
BEFORE = dataclasses.replace(RULES, contact_rules=False)  # a journey recorded before them
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
LOW_BACK_PAIN, NECK_PAIN, BACKACHE, SCIATICA = "279039007", "81680005", "161891005", "23056005"
CHEST_PAIN = "29857009"
MSK = "msk_physiotherapy"
_ids = itertools.count(1)


def contact(
    encounter: str,
    when: datetime,
    *,
    kind: str = "ae_attendance",
    status: str = "finished",
    planned: bool = False,
    complaint: str | None = LOW_BACK_PAIN,
    diagnoses: tuple[str, ...] = (),
    revision: int = 1,
    category: str | None = "1",
    org: str = "RXX01",
    event_id: str | None = None,
) -> ContactEvent:
    return ContactEvent(
        event_id=event_id or f"enc-ev-{next(_ids)}",
        occurred_at=when.isoformat(),
        encounter_id=encounter,
        revision=revision,
        contact_kind=kind,
        planned=planned,
        status=status,
        started_at=when.isoformat(),
        ended_at=(when + timedelta(hours=4)).isoformat(),
        source_org=org,
        chief_complaint=complaint if kind == "ae_attendance" else None,
        diagnosis_codes=list(diagnoses),
        attendance_category=category if kind == "ae_attendance" else None,
    )


def with_contacts(*contacts: ContactEvent, state: JourneyState | None = None) -> JourneyState:
    state = state or new_state()
    for c in contacts:
        apply_contact(state, c)
    return state


def ae_run(n: int, start: datetime = T0, every: timedelta = 10 * DAY, **kw: object):  # type: ignore[no-untyped-def]
    """n A&E attendances for low back pain, `every` apart."""
    return [contact(f"e{i}", start + i * every, **kw) for i in range(n)]  # type: ignore[arg-type]


def rules_of(state: JourneyState) -> list[str]:
    return sorted(a.rule for a in state.alerts)


def open_rules(state: JourneyState) -> list[str]:
    return sorted(a.rule for a in state.alerts if a.status != "resolved")


class TestApplyContact:
    def test_a_repeated_event_id_is_applied_once(self):
        c = contact("e1", T0)
        state = with_contacts(c, c)
        assert len(state.contacts) == 1
        assert (state.events_applied, state.duplicates_ignored) == (1, 1)

    def test_the_highest_revision_of_an_encounter_is_kept_whatever_the_order(self):
        arrived = contact("e1", T0, status="arrived", revision=1)
        finished = contact("e1", T0, status="finished", revision=2)
        cancelled = contact("e1", T0, status="entered_in_error", revision=3)
        for order in ((arrived, finished, cancelled), (cancelled, arrived, finished)):
            state = with_contacts(*order)
            assert [(c.revision, c.status) for c in state.contacts] == [(3, "entered_in_error")]

    def test_a_lower_revision_arriving_late_changes_nothing(self):
        state = with_contacts(contact("e1", T0, status="finished", revision=2))
        assert apply_contact(state, contact("e1", T0, status="arrived", revision=1)) is False
        assert state.contacts[0].status == "finished"

    def test_the_same_revision_under_a_new_event_id_changes_nothing(self):
        state = with_contacts(contact("e1", T0, revision=1))
        assert apply_contact(state, contact("e1", T0, status="cancelled", revision=1)) is False
        assert state.contacts[0].status == "finished"

    def test_contacts_are_kept_in_time_order(self):
        state = with_contacts(contact("late", T0 + DAY), contact("early", T0))
        assert [c.encounter_id for c in state.contacts] == ["early", "late"]


class TestWhatCounts:
    @pytest.mark.parametrize(
        "status", ["cancelled", "entered_in_error", "did_not_attend", "booked"]
    )
    def test_contacts_that_did_not_happen_never_count(self, status):
        state = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, status=status))
        evaluate(state, RULES, T0 + 60 * DAY)
        assert FREQUENT not in rules_of(state)

    @pytest.mark.parametrize("status", ["arrived", "in_progress", "finished"])
    def test_contacts_that_happened_count(self, status):
        state = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, status=status))
        evaluate(state, RULES, T0 + 60 * DAY)
        assert rules_of(state).count(FREQUENT) == 1

    @pytest.mark.parametrize("kind", ["gp_appointment", "admission", "outpatient_appointment"])
    def test_planned_care_is_not_counted_unplanned_care_is(self, kind):
        planned = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, kind=kind, planned=True))
        evaluate(planned, RULES, T0 + 60 * DAY)
        assert FREQUENT not in rules_of(planned)
        unplanned = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, kind=kind, planned=False))
        evaluate(unplanned, RULES, T0 + 60 * DAY)
        assert rules_of(unplanned).count(FREQUENT) == 1

    @pytest.mark.parametrize("kind", ["ae_attendance", "nhs_111", "out_of_hours", "crisis_team"])
    def test_urgent_care_is_unplanned_whatever_the_source_says(self, kind):
        state = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, kind=kind, planned=True))
        evaluate(state, RULES, T0 + 60 * DAY)
        assert rules_of(state).count(FREQUENT) == 1

    def test_a_planned_ae_follow_up_by_its_ecds_category_is_not_counted(self):
        state = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, category="4"))
        evaluate(state, RULES, T0 + 60 * DAY)
        assert FREQUENT not in rules_of(state)

    @pytest.mark.parametrize("category", ["1", "2", "3", None])
    def test_unplanned_ae_categories_count(self, category):
        state = with_contacts(*ae_run(3), contact("x", T0 + 35 * DAY, category=category))
        evaluate(state, RULES, T0 + 60 * DAY)
        assert rules_of(state).count(FREQUENT) == 1

    def test_journeys_recorded_before_the_contact_rules_raise_none_of_them(self):
        state = with_contacts(*ae_run(6))
        refer(state, "r1", ("submitted", T0 - DAY))
        evaluate(state, BEFORE, T0 + 100 * DAY)
        assert not {FREQUENT, AE_PAIN, WHILE_WAITING} & set(rules_of(state))


class TestFrequentAttender:
    def test_four_ae_attendances_for_back_pain_are_one_alert_in_exact_words(self):
        state = with_contacts(*ae_run(4))
        changes = evaluate(state, RULES, T0 + 40 * DAY)
        assert [a.rule for a in raised(changes)] == [FREQUENT]
        a = alert_for(state, FREQUENT)
        assert (a.kind, a.severity, a.status) == ("looping", "high", "open")
        assert a.explanation == (
            "4 unplanned contacts in 30 days (5 January 2026 to 4 February 2026): "
            "4 A&E attendances. 4 of them were A&E attendances for back or neck pain, with no "
            "referral open."
        )
        assert [e.encounter_id for e in a.evidence] == ["e0", "e1", "e2", "e3"]
        assert a.evidence[0].detail == "A&E attendance at RXX01 (back or neck pain)"

    def test_three_are_not(self):
        state = with_contacts(*ae_run(3))
        assert evaluate(state, RULES, T0 + 40 * DAY) == [] or FREQUENT not in rules_of(state)
        assert FREQUENT not in rules_of(state)

    def test_mixed_kinds_are_named_in_the_explanation(self):
        state = with_contacts(
            contact("a", T0),
            contact("b", T0 + DAY, kind="nhs_111"),
            contact("c", T0 + 2 * DAY, kind="crisis_team"),
            contact("d", T0 + 3 * DAY, kind="gp_appointment", planned=False),
        )
        evaluate(state, RULES, T0 + 10 * DAY)
        text = alert_for(state, FREQUENT).explanation
        assert (
            "1 A&E attendance, 1 NHS 111 contact, 1 crisis team contact and 1 unplanned GP "
            "appointment." in text
        )
        assert (
            "1 of them was an A&E attendance for back or neck pain, with no referral open." in text
        )

    def test_182_days_from_first_to_last_is_within_the_window(self):
        days = [0, 60, 120, 182]
        state = with_contacts(*[contact(f"e{d}", T0 + d * DAY, kind="nhs_111") for d in days])
        evaluate(state, RULES, T0 + 200 * DAY)
        assert rules_of(state) == [FREQUENT]

    def test_a_second_more_is_outside_it(self):
        state = with_contacts(
            contact("e0", T0, kind="nhs_111"),
            contact("e1", T0 + 60 * DAY, kind="nhs_111"),
            contact("e2", T0 + 120 * DAY, kind="nhs_111"),
            contact("e3", T0 + 182 * DAY + SECOND, kind="nhs_111"),
        )
        evaluate(state, RULES, T0 + 200 * DAY)
        assert rules_of(state) == []

    def test_a_backlog_in_any_order_gives_the_alert_contact_by_contact_gives(self):
        contacts = ae_run(9, every=7 * DAY, kind="nhs_111")
        live = new_state()
        for c in contacts:
            apply_contact(live, c)
            evaluate(live, RULES, datetime.fromisoformat(c.started_at) + DAY)
        backlog = with_contacts(*reversed(contacts))
        evaluate(backlog, RULES, T0 + 400 * DAY)
        keys = sorted(a.key for a in live.alerts)
        assert keys == sorted(a.key for a in backlog.alerts)
        # nine weekly calls: two runs of four (the ninth starts the next run)
        assert [len(a.evidence) for a in live.alerts] == [4, 4]

    def test_the_same_history_judged_a_year_later_gives_the_same_alert(self):
        soon, later = with_contacts(*ae_run(4)), with_contacts(*ae_run(4))
        evaluate(soon, RULES, T0 + 31 * DAY)
        evaluate(later, RULES, T0 + 400 * DAY)
        assert [a.key for a in soon.alerts] == [a.key for a in later.alerts]

    def test_a_late_contact_inside_a_run_raises_no_second_alert(self):
        state = with_contacts(*ae_run(4, kind="nhs_111"))
        evaluate(state, RULES, T0 + 40 * DAY)
        apply_contact(state, contact("late", T0 + 5 * DAY, kind="nhs_111"))
        assert raised(evaluate(state, RULES, T0 + 41 * DAY)) == []
        assert rules_of(state) == [FREQUENT]

    def test_an_attendance_entered_in_error_withdraws_the_alert(self):
        state = with_contacts(*ae_run(4, kind="nhs_111"))
        evaluate(state, RULES, T0 + 40 * DAY)
        apply_contact(state, contact("e2", T0 + 20 * DAY, status="entered_in_error", revision=2))
        changes = evaluate(state, RULES, T0 + 41 * DAY)
        a = alert_for(state, FREQUENT)
        assert a.status == "resolved" and a.resolution == f"{WITHDRAWN}: fewer than 4 remain"
        assert [c.change for c in changes] == ["resolved"]
        # its contacts count again: a fourth that happened raises a new alert
        apply_contact(state, contact("e9", T0 + 50 * DAY, kind="nhs_111"))
        evaluate(state, RULES, T0 + 51 * DAY)
        fresh = [a for a in state.alerts if a.status == "open"]
        assert [e.encounter_id for e in fresh[0].evidence] == ["e0", "e1", "e3", "e9"]

    def test_it_never_progresses_when_the_person_is_referred_and_seen(self):
        state = with_contacts(*ae_run(4, kind="nhs_111"))
        evaluate(state, RULES, T0 + 40 * DAY)
        t = T0 + 45 * DAY
        refer(
            state,
            "r1",
            ("submitted", t),
            ("accepted", t + DAY),
            ("booked", t + 2 * DAY),
            ("attended", t + 9 * DAY),
            category=MSK,
        )
        evaluate(state, RULES, t + 10 * DAY)
        # still on the worklist (escalated, nobody took it on), never progressing
        assert alert_for(state, FREQUENT).status == "escalated"

    def test_referrals_are_frequent_contact_and_contacts_frequent_attendance_not_both(self):
        referrals = new_state()
        for i, cat in enumerate(
            ("pain_management_programme", "talking_therapies_ltc", MSK, "social_prescribing")
        ):
            refer(referrals, f"r{i}", ("submitted", T0 + i * 10 * DAY), category=cat)
        evaluate(referrals, RULES, T0 + 31 * DAY)
        assert "looping.frequent_contact" in rules_of(referrals)
        assert FREQUENT not in rules_of(referrals)
        contacts = with_contacts(*ae_run(4, kind="nhs_111"))
        evaluate(contacts, RULES, T0 + 31 * DAY)
        assert rules_of(contacts) == [FREQUENT]

    def test_two_referrals_and_two_calls_are_neither(self):
        """The documented limitation (hazard log): each count has its own source."""
        state = with_contacts(*ae_run(2, kind="nhs_111"))
        refer(state, "r1", ("submitted", T0 + 2 * DAY), ("rejected", T0 + 3 * DAY))
        refer(state, "r2", ("submitted", T0 + 4 * DAY), ("rejected", T0 + 5 * DAY), category=MSK)
        evaluate(state, RULES, T0 + 6 * DAY)
        assert not {FREQUENT, "looping.frequent_contact"} & set(rules_of(state))

    def test_the_open_referral_is_named(self):
        state = with_contacts(*ae_run(4, start=T0 + 10 * DAY))
        refer(state, "r1", ("submitted", T0), category=MSK, service_name="Community MSK")
        evaluate(state, RULES, T0 + 60 * DAY)
        text = alert_for(state, FREQUENT).explanation
        assert text.endswith(
            "4 of them were A&E attendances for back or neck pain. A referral to Community "
            "MSK was open at the time."
        )


class TestMemory:
    def test_contacts_older_than_keep_days_are_dropped_once_judged(self):
        state = with_contacts(*ae_run(4, kind="nhs_111"))
        now = T0 + (RULES.contacts_keep_days + 100) * DAY
        evaluate(state, RULES, now)
        assert state.contacts == []
        assert rules_of(state) == [FREQUENT]  # judged before it was dropped

    def test_dropping_old_contacts_changes_no_decision(self):
        """Two years of weekly calls judged week by week, with and without forgetting: the
        same alerts, and the journey holds no more than keep_days of contacts."""
        forgetful, total = RULES, dataclasses.replace(RULES, contacts_keep_days=100_000)
        a, b = new_state(), new_state()
        for i in range(104):
            c = contact(f"w{i}", T0 + i * 7 * DAY, kind="nhs_111")
            for state, rules in ((a, forgetful), (b, total)):
                apply_contact(state, dataclasses.replace(c))
                evaluate(state, rules, T0 + i * 7 * DAY + DAY)
        assert [x.key for x in a.alerts] == [x.key for x in b.alerts]
        assert len(a.alerts) == 26
        assert len(a.contacts) <= RULES.contacts_keep_days // 7 + 1 < len(b.contacts)
        assert all(x.status != "resolved" for x in a.alerts)


class TestRepeatedAePain:
    def test_two_attendances_for_back_pain_in_90_days_with_nothing_open(self):
        state = with_contacts(*ae_run(2, every=30 * DAY))
        changes = evaluate(state, RULES, T0 + 31 * DAY)
        assert [a.rule for a in raised(changes)] == [AE_PAIN]
        a = alert_for(state, AE_PAIN)
        assert (a.kind, a.severity) == ("looping", "high")
        assert a.explanation == (
            "2 A&E attendances for back or neck pain in 30 days (5 January 2026 to 4 February "
            "2026), and no referral was open. A referral (for example to MSK physiotherapy or "
            "a pain service) may be what they need."
        )

    @pytest.mark.parametrize("code", [LOW_BACK_PAIN, NECK_PAIN, BACKACHE, SCIATICA])
    def test_each_configured_code_counts_as_chief_complaint_or_diagnosis(self, code):
        by_complaint = with_contacts(*ae_run(2, complaint=code))
        evaluate(by_complaint, RULES, T0 + 31 * DAY)
        assert rules_of(by_complaint) == [AE_PAIN]
        by_diagnosis = with_contacts(*ae_run(2, complaint=CHEST_PAIN, diagnoses=(code,)))
        evaluate(by_diagnosis, RULES, T0 + 31 * DAY)
        assert rules_of(by_diagnosis) == [AE_PAIN]

    def test_another_complaint_is_not_pain(self):
        state = with_contacts(*ae_run(2, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 31 * DAY)
        assert rules_of(state) == []

    def test_one_pain_attendance_and_one_other_is_not_a_repeat(self):
        state = with_contacts(contact("a", T0), contact("b", T0 + DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 31 * DAY)
        assert rules_of(state) == []

    def test_nhs_111_calls_for_back_pain_are_not_ae(self):
        state = with_contacts(*ae_run(2, kind="nhs_111"))
        evaluate(state, RULES, T0 + 31 * DAY)
        assert rules_of(state) == []

    def test_90_days_apart_is_within_the_window_a_second_more_is_not(self):
        inside = with_contacts(contact("a", T0), contact("b", T0 + 90 * DAY))
        evaluate(inside, RULES, T0 + 100 * DAY)
        assert rules_of(inside) == [AE_PAIN]
        outside = with_contacts(contact("a", T0), contact("b", T0 + 90 * DAY + SECOND))
        evaluate(outside, RULES, T0 + 100 * DAY)
        assert rules_of(outside) == []

    def test_a_referral_open_at_the_second_attendance_means_no_alert(self):
        state = with_contacts(*ae_run(2, every=30 * DAY))
        refer(state, "r1", ("submitted", T0 + 10 * DAY), category=MSK)
        evaluate(state, RULES, T0 + 31 * DAY)
        assert AE_PAIN not in rules_of(state)

    def test_a_referral_closed_before_the_second_is_not_open(self):
        state = with_contacts(*ae_run(2, every=30 * DAY))
        refer(
            state,
            "r1",
            ("submitted", T0 + 5 * DAY),
            ("rejected", T0 + 8 * DAY),
            category=MSK,
            reason="does-not-meet-criteria",
        )
        evaluate(state, RULES, T0 + 31 * DAY)
        assert AE_PAIN in rules_of(state)

    def test_four_at_once_are_one_frequent_attender_alert_and_nothing_else(self):
        """The issue's end-to-end case, as a backlog judged whole."""
        state = with_contacts(*ae_run(4))
        changes = evaluate(state, RULES, T0 + 40 * DAY)
        assert [(c.change, c.alert.rule) for c in changes] == [("raised", FREQUENT)]
        assert rules_of(state) == [FREQUENT]

    def test_two_then_two_more_fold_the_repeat_into_the_frequent_attender_alert(self):
        first, second = ae_run(4)[:2], ae_run(4)[2:]
        state = with_contacts(*first)
        evaluate(state, RULES, T0 + 11 * DAY)
        assert open_rules(state) == [AE_PAIN]
        for c in second:
            apply_contact(state, c)
        changes = evaluate(state, RULES, T0 + 31 * DAY)
        assert [(c.change, c.alert.rule) for c in changes] == [
            ("raised", FREQUENT),
            ("resolved", AE_PAIN),
        ]
        assert open_rules(state) == [FREQUENT]
        assert alert_for(state, AE_PAIN).resolution == (
            "included in the frequent-attender alert raised on 5 February 2026, which counts "
            "the same attendances"
        )

    def test_a_repeat_a_coordinator_took_on_stays_and_is_not_raised_again(self):
        first, second = ae_run(4)[:2], ae_run(4)[2:]
        state = with_contacts(*first)
        evaluate(state, RULES, T0 + 11 * DAY)
        apply_contact_action = alert_for(state, AE_PAIN).alert_id
        from workflows.journeys.rules import apply_action

        apply_action(state, act(apply_contact_action, "acknowledge", T0 + 12 * DAY))
        for c in second:
            apply_contact(state, c)
        evaluate(state, RULES, T0 + 31 * DAY)
        assert open_rules(state) == [FREQUENT, AE_PAIN]
        assert rules_of(state) == [FREQUENT, AE_PAIN]  # the 3rd and 4th raise no second repeat

    def test_it_progresses_once_a_referral_made_since_is_accepted(self):
        state = with_contacts(*ae_run(2, every=30 * DAY))
        evaluate(state, RULES, T0 + 31 * DAY)
        t = T0 + 40 * DAY
        refer(state, "r1", ("submitted", t), category=MSK, service_name="Community MSK")
        evaluate(state, RULES, t + DAY)
        # a submission may be turned down: still on the worklist
        assert alert_for(state, AE_PAIN).status in ("open", "escalated")
        refer(state, "r1", ("accepted", t + 2 * DAY), category=MSK, service_name="Community MSK")
        changes = evaluate(state, RULES, t + 3 * DAY)
        a = alert_for(state, AE_PAIN)
        assert [c.change for c in changes] == ["progressing"]
        assert (a.status, a.progress) == (
            "progressing",
            "referred to Community MSK on 14 February 2026, accepted on 16 February 2026",
        )

    def test_a_referral_turned_down_leaves_it_open(self):
        state = with_contacts(*ae_run(2, every=30 * DAY))
        evaluate(state, RULES, T0 + 31 * DAY)
        t = T0 + 40 * DAY
        refer(
            state,
            "r1",
            ("submitted", t),
            ("rejected", t + DAY),
            category=MSK,
            reason="does-not-meet-criteria",
        )
        evaluate(state, RULES, t + 2 * DAY)
        assert alert_for(state, AE_PAIN).status == "escalated"  # on the worklist, not progressing


class TestUnplannedWhileWaiting:
    def waiting(self, *steps: tuple[str, datetime]) -> JourneyState:
        state = new_state()
        refer(state, "r1", *steps, category=MSK, service_name="Community MSK")
        return state

    def test_ae_while_accepted_and_not_seen_reaches_the_receiving_service(self):
        state = self.waiting(("submitted", T0), ("accepted", T0 + 2 * DAY))
        apply_contact(state, contact("a", T0 + 20 * DAY, complaint=CHEST_PAIN))
        changes = evaluate(state, RULES, T0 + 21 * DAY)
        assert [a.rule for a in raised(changes)] == [WHILE_WAITING]
        a = alert_for(state, WHILE_WAITING)
        assert (a.kind, a.severity, a.referral_id) == ("stalled", "high", "r1")
        assert a.recipient_orgs == ["ORG-MSK_PHYS"]
        assert a.explanation == (
            "Attended A&E on 25 January 2026 while waiting for Community MSK (referred on 5 "
            "January 2026, accepted then, not yet seen). The wait may be failing them: "
            "ORG-MSK_PHYS and the coordinators should check how soon they can be seen."
        )

    @pytest.mark.parametrize("state_then", ["submitted", "accepted", "booked"])
    def test_a_crisis_contact_in_any_waiting_state(self, state_then):
        steps = [("submitted", T0), ("accepted", T0 + DAY), ("booked", T0 + 2 * DAY)]
        upto = [s for s in steps][: [s for s, _ in steps].index(state_then) + 1]
        state = self.waiting(*upto)
        apply_contact(state, contact("c", T0 + 5 * DAY, kind="crisis_team"))
        evaluate(state, RULES, T0 + 6 * DAY)
        assert rules_of(state).count(WHILE_WAITING) == 1

    @pytest.mark.parametrize("kind", ["nhs_111", "out_of_hours", "gp_appointment"])
    def test_other_contacts_are_not_the_wait_failing(self, kind):
        state = self.waiting(("submitted", T0))
        apply_contact(state, contact("c", T0 + 5 * DAY, kind=kind))
        evaluate(state, RULES, T0 + 6 * DAY)
        assert WHILE_WAITING not in rules_of(state)

    def test_before_the_referral_is_not_while_waiting(self):
        state = self.waiting(("submitted", T0))
        apply_contact(state, contact("c", T0 - DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 2 * DAY)
        assert WHILE_WAITING not in rules_of(state)

    def test_after_being_seen_is_not_while_waiting(self):
        state = self.waiting(
            ("submitted", T0), ("accepted", T0 + DAY), ("booked", T0 + 2 * DAY),
            ("attended", T0 + 9 * DAY), ("booked", T0 + 10 * DAY),
        )  # fmt: skip
        apply_contact(state, contact("c", T0 + 12 * DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 13 * DAY)
        assert WHILE_WAITING not in rules_of(state)

    def test_a_wait_already_over_when_judged_raises_nothing(self):
        """A backlog: the attendance happened while waiting, but the person has since been
        seen; like a stall, a wait that is over is not failing them now."""
        state = self.waiting(("submitted", T0), ("accepted", T0 + DAY), ("attended", T0 + 30 * DAY))
        apply_contact(state, contact("c", T0 + 5 * DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 31 * DAY)
        assert WHILE_WAITING not in rules_of(state)

    def test_it_resolves_itself_when_the_wait_ends(self):
        state = self.waiting(("submitted", T0), ("accepted", T0 + DAY))
        apply_contact(state, contact("c", T0 + 5 * DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 6 * DAY)
        refer(state, "r1", ("booked", T0 + 7 * DAY), category=MSK)
        still = evaluate(state, RULES, T0 + 8 * DAY)  # booked: still waiting
        assert "resolved" not in [c.change for c in still]
        refer(state, "r1", ("attended", T0 + 14 * DAY), category=MSK)
        changes = evaluate(state, RULES, T0 + 15 * DAY)
        a = alert_for(state, WHILE_WAITING)
        assert [c.change for c in changes] == ["resolved"]
        assert a.resolution == "the wait is over: the referral is now attended"

    def test_two_attendances_during_one_wait_are_one_alert(self):
        state = self.waiting(("submitted", T0))
        apply_contact(state, contact("a", T0 + 2 * DAY, complaint=CHEST_PAIN))
        apply_contact(state, contact("b", T0 + 4 * DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 5 * DAY)
        a = alert_for(state, WHILE_WAITING)
        assert ", and 1 time more since." in a.explanation
        assert [e.encounter_id for e in a.evidence] == [None, "a", "b"]

    def test_an_attendance_entered_in_error_resolves_it(self):
        state = self.waiting(("submitted", T0))
        apply_contact(state, contact("a", T0 + 2 * DAY, complaint=CHEST_PAIN))
        evaluate(state, RULES, T0 + 3 * DAY)
        apply_contact(
            state,
            contact("a", T0 + 2 * DAY, complaint=CHEST_PAIN, status="entered_in_error", revision=2),
        )
        evaluate(state, RULES, T0 + 4 * DAY)
        a = alert_for(state, WHILE_WAITING)
        assert a.status == "resolved" and a.resolution.startswith("the wait is over, or")

    def test_it_is_judged_only_once_events_settle(self):
        state = self.waiting(("submitted", T0))
        apply_contact(state, contact("a", T0 + 2 * DAY, complaint=CHEST_PAIN))
        assert evaluate(state, RULES, T0 + 3 * DAY, stalls=False) == []
        assert [a.rule for a in raised(evaluate(state, RULES, T0 + 3 * DAY))] == [WHILE_WAITING]

    def test_a_waiting_person_attending_four_times_is_also_a_frequent_attender(self):
        """Two problems, two alerts: the wait failing (to the receiving service) and the
        pattern (to the coordinators); the repeat for pain needs nothing open, so not that."""
        state = self.waiting(("submitted", T0), ("accepted", T0 + DAY))
        for c in ae_run(4, start=T0 + DAY):
            apply_contact(state, c)
        evaluate(state, RULES, T0 + 40 * DAY)
        assert rules_of(state) == [FREQUENT, WHILE_WAITING]


class TestTheBridge:
    def test_an_encounter_event_becomes_the_contact_signal_with_codes_only(self):
        started = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
        data = EncounterRecorded(
            encounter_id=str(uuid.uuid4()),
            revision=3,
            contact_kind="ae_attendance",
            planned=False,
            status="finished",
            started_at=started,
            ended_at=started + timedelta(hours=5),
            source_org="RXX01",
            source_system="pas-rxx",
            channel="hl7v2",
            chief_complaint=LOW_BACK_PAIN,
            diagnosis_codes=[SCIATICA],
            attendance_category="1",
            discharge_destination="306689006",
        )
        event = make_event(data, subject="pt_bridge")
        c = to_contact(event, data)
        assert c == ContactEvent(
            event_id=event.id,
            occurred_at=event.time.isoformat(),
            encounter_id=data.encounter_id,
            revision=3,
            contact_kind="ae_attendance",
            planned=False,
            status="finished",
            started_at="2026-03-02T23:30:00+00:00",
            ended_at="2026-03-03T04:30:00+00:00",
            source_org="RXX01",
            chief_complaint=LOW_BACK_PAIN,
            diagnosis_codes=[SCIATICA],
            attendance_category="1",
            discharge_destination="306689006",
        )


class TestNamedEverywhere:
    def test_every_rule_with_a_severity_has_a_name_on_the_dashboard(self):
        from services.notifications.dashboard.labels import RULE_NAMES

        assert set(RULES.severity) <= set(RULE_NAMES), sorted(set(RULES.severity) - set(RULE_NAMES))

    def test_an_alert_addressed_to_a_service_says_why_in_words(self):
        from services.notifications.audience import ALERT_RULE_WORDS

        assert ALERT_RULE_WORDS[WHILE_WAITING] == (
            "the person needed A&E or the crisis team while waiting for a referral to your service"
        )
