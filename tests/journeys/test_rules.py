"""The journey rules as plain unit tests: no Temporal, no database, no clock.

Every expected date is worked out from rules.toml and the calendar, not copied from a run:
2026-01-05 is a Monday; Good Friday and Easter Monday 2026 are 3 and 6 April; Christmas Day
2026 is a Friday and the Boxing Day substitute is Monday 28 December; 1 January 2027 is a Friday.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workflows.journeys.rules import (
    DEFAULT_RULES_FILE,
    SEEN_WINDOW,
    Rules,
    apply_action,
    apply_assessment,
    apply_referral_event,
    escalation_due,
    evaluate,
    load_rules,
    next_wake,
)
from workflows.journeys.stalls import add_working_days, stall_deadlines
from workflows.journeys.state import (
    Alert,
    AlertAction,
    AlertChange,
    AssessmentEvent,
    Episode,
    JourneyEvent,
    JourneyState,
)

#: the rules a journey started today runs with (the workflow turns the one vocabulary on)
RULES = dataclasses.replace(load_rules(), bands_from_vocabulary=True)
#: the rules as the files give them (and as a journey started before the one vocabulary
#: replays with them)
LEGACY = LOADED = load_rules()
RULES_PY = Path(__file__).resolve().parents[2] / "workflows" / "journeys" / "rules.py"
PATIENT = "pt_unit_0001"
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)

SERVICES = {
    "pain_management_programme": "svc-pain-mgmt-programme",
    "talking_therapies_ltc": "svc-talking-therapies-ltc",
    "msk_physiotherapy": "svc-msk-physio",
    "social_prescribing": "svc-social-prescribing",
    "peer_support": "svc-peer-support",
    "crisis": "svc-crisis",
    "weight_management": "svc-weight-management",
}

_ids = itertools.count(1)


# --- helpers ----------------------------------------------------------------------------------


def at(
    year: int, month: int, day: int, hour: int = 9, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ev(
    referral_id: str,
    state: str,
    when: datetime,
    *,
    category: str = "pain_management_programme",
    service: str | None = None,
    priority: str = "routine",
    appointment_at: datetime | None = None,
    reason: str | None = None,
    event_id: str | None = None,
    event_type: str | None = None,
    service_name: str | None = None,
) -> JourneyEvent:
    return JourneyEvent(
        event_id=event_id or f"ev-{next(_ids)}",
        event_type=event_type or f"uk.waymark.referral.{state.replace('_', '-')}",
        occurred_at=when.isoformat(),
        referral_id=referral_id,
        state=state,
        from_org="GP-A81001",
        to_org="ORG-" + category.upper()[:8],
        to_service_id=service or SERVICES[category],
        service_category=category,
        priority=priority,
        reason_codes=["279039007"],
        transition_reason=reason,
        appointment_at=appointment_at.isoformat() if appointment_at else None,
        service_name=service_name,
    )


def new_state(patient: str = PATIENT) -> JourneyState:
    return JourneyState(patient_id=patient)


def journey(*events: JourneyEvent, patient: str = PATIENT) -> JourneyState:
    state = new_state(patient)
    for e in events:
        apply_referral_event(state, e)
    return state


def refer(
    state: JourneyState, referral_id: str, *steps: tuple[str, datetime], **kw: object
) -> None:
    """Add a referral's steps (state, time) to the journey, in the order given."""
    for st, when in steps:
        apply_referral_event(state, ev(referral_id, st, when, **kw))  # type: ignore[arg-type]


def only_episode(state: JourneyState) -> Episode:
    assert len(state.episodes) == 1
    return state.episodes[0]


def deadlines(ep: Episode, rules: Rules = RULES) -> dict[str, datetime]:
    found = stall_deadlines(ep, rules)
    by_rule = {d.rule: d.due for d in found}
    assert len(by_rule) == len(found), "one deadline per rule"
    return by_rule


def raised(changes: list[AlertChange], rule: str | None = None) -> list[Alert]:
    return [
        c.alert for c in changes if c.change == "raised" and (rule is None or c.alert.rule == rule)
    ]


def changed(changes: list[AlertChange], change: str, rule: str | None = None) -> list[Alert]:
    return [
        c.alert for c in changes if c.change == change and (rule is None or c.alert.rule == rule)
    ]


def alert_for(state: JourneyState, rule: str) -> Alert:
    found = [a for a in state.alerts if a.rule == rule]
    assert len(found) == 1, f"{rule}: {[a.key for a in state.alerts]}"
    return found[0]


def assess(
    assessment_id: str,
    when: datetime,
    *,
    instrument: str = "PHQ-9",
    band: str = "mild",
    total: int = 7,
    item9: int | None = 0,
    event_id: str | None = None,
) -> AssessmentEvent:
    return AssessmentEvent(
        event_id=event_id or f"as-ev-{next(_ids)}",
        occurred_at=when.isoformat(),
        assessment_id=assessment_id,
        instrument=instrument,
        band=band,
        total=total,
        item9=item9,
    )


def act(
    alert_id: str,
    action: str,
    when: datetime,
    *,
    actor: str = "coord-1",
    event_id: str | None = None,
    assignee: str | None = None,
    reason: str | None = None,
    until: datetime | None = None,
) -> AlertAction:
    return AlertAction(
        event_id=event_id or f"act-{next(_ids)}",
        alert_id=alert_id,
        action=action,
        actor=actor,
        occurred_at=when.isoformat(),
        assignee=assignee,
        reason=reason,
        until=until.isoformat() if until else None,
    )


T0 = at(2026, 1, 5)  # Monday 5 January 2026, 09:00 UTC


def safety_state(when: datetime = T0) -> tuple[JourneyState, Alert]:
    """A journey whose only alert is an urgent PHQ-9 item 9 alert raised at `when`."""
    state = new_state()
    apply_assessment(state, assess("phq-1", when, item9=2, band="moderate", total=14))
    changes = evaluate(state, RULES, when)
    assert [c.change for c in changes] == ["raised"]
    return state, changes[0].alert


# --- load_rules -------------------------------------------------------------------------------


class TestLoadRules:
    def test_the_default_file_is_the_rules_toml_next_to_the_rules(self):
        assert DEFAULT_RULES_FILE.name == "rules.toml"
        assert DEFAULT_RULES_FILE.parent == RULES_PY.parent
        assert DEFAULT_RULES_FILE.is_file()

    def test_every_field_is_populated(self):
        for f in dataclasses.fields(Rules):
            value = getattr(RULES, f.name)
            assert value is not None, f.name
            if isinstance(value, list | dict) and f.name != "triage_minutes_by_category":
                assert value, f"{f.name} is empty"

    def test_no_category_triages_in_minutes_by_default(self):
        # an empty table in rules.toml, documented there, for local policy to fill
        assert RULES.triage_minutes_by_category == {}
        raw = tomllib.loads(DEFAULT_RULES_FILE.read_text())
        assert raw["stall"]["triage_minutes_by_category"] == {}

    def test_thresholds_are_the_documented_ones(self):
        assert RULES.settle_seconds == 60
        assert RULES.triage_working_days_routine == 10
        assert RULES.triage_working_days_urgent == 2
        assert RULES.booking_weeks_default == 6
        assert RULES.booking_weeks_by_category == {"talking_therapies_ltc": 4, "crisis": 1}
        assert RULES.outcome_grace_working_days == 2
        assert RULES.no_activity_weeks == 6
        assert RULES.rtt_weeks == 18
        assert RULES.rereferral_window_days == 182
        assert RULES.ping_pong_window_days == 182
        assert (RULES.returned_times, RULES.returned_window_days) == (2, 182)
        assert (RULES.frequent_contacts, RULES.frequent_window_days) == (4, 182)
        assert RULES.phq9_item9_above == 0
        assert not LEGACY.bands_from_vocabulary and RULES.bands_from_vocabulary
        assert (RULES.frequent_attender_contacts, RULES.frequent_attender_window_days) == (4, 182)
        assert (RULES.ae_pain_attendances, RULES.ae_pain_window_days) == (2, 90)
        assert RULES.ae_pain_codes == ["279039007", "161891005", "81680005", "23056005"]
        assert RULES.while_waiting_kinds == ["ae_attendance", "crisis_team"]
        assert RULES.waiting_states == ["submitted", "accepted", "booked"]
        assert RULES.planned_ae_attendance_categories == ["4"]
        assert RULES.contacts_keep_days == 548

    def test_escalation_hours_per_severity(self):
        assert RULES.escalation_hours == {"urgent": 1, "high": 24, "medium": 72}

    def test_the_severity_table_covers_every_rule_name_used_in_rules_py(self):
        modules = [*RULES_PY.parent.glob("rules*.py"), RULES_PY.with_name("stalls.py")]
        sources = "".join(p.read_text() for p in modules)
        used = set(re.findall(r"\"((?:stalled|looping|safety|pathway)\.[a-z0-9_]+)", sources))
        # 6 stall, 5 loop, 2 safety (one kept for replay), 2 pathway prompts; 3 contact rules
        # (rules_contacts.py: 1 stall, 2 loop)
        assert len(used) == 18, sorted(used)
        assert used <= set(RULES.severity), sorted(used - set(RULES.severity))
        assert set(RULES.severity) <= used, "severity entries for rules that do not exist"

    def test_every_severity_has_escalation_hours(self):
        assert set(RULES.severity.values()) <= set(RULES.escalation_hours)

    def test_safety_rules_are_urgent(self):
        assert RULES.severity["safety.phq9_item9"] == "urgent"
        assert RULES.severity["safety.high_risk_band"] == "urgent"
        assert RULES.severity["stalled.not_triaged"] == "high"
        assert RULES.severity["looping.frequent_contact"] == "medium"

    def test_bank_holidays_include_easter_and_christmas_2026(self):
        for day in ("2026-04-03", "2026-04-06", "2026-12-25", "2026-12-28", "2027-01-01"):
            assert day in RULES.bank_holidays
        assert "2026-12-26" not in RULES.bank_holidays  # a Saturday: the 28th substitutes

    def test_the_values_agree_with_the_toml(self):
        raw = tomllib.loads(DEFAULT_RULES_FILE.read_text())
        assert RULES.severity == raw["severity"]
        assert RULES.bank_holidays == raw["calendar"]["bank_holidays"]
        assert RULES.rtt_weeks == raw["stall"]["rtt"]["weeks"]
        assert RULES.outcome_grace_working_days == raw["stall"]["outcome"]["grace_working_days"]

    def test_every_number_is_read_from_the_file_not_a_default(self, tmp_path):
        text = DEFAULT_RULES_FILE.read_text()
        bumped, n = re.subn(
            r"^(\s*[\w\".]+\s*=\s*)(\d+)\s*$",
            lambda m: f"{m.group(1)}{int(m.group(2)) + 100}",
            text,
            flags=re.M,
        )
        # 18 whole-number thresholds, 2 booking overrides, 2 referral-to-treatment categories,
        # 3 escalation hours; 5 of the contact rules ([contacts])
        assert n == 18 + 2 + 2 + 3 + 5
        path = tmp_path / "rules.toml"
        path.write_text(bumped)
        other = load_rules(path)
        for f in dataclasses.fields(Rules):
            base, new = getattr(LOADED, f.name), getattr(other, f.name)
            if isinstance(base, int) and not isinstance(base, bool) and f.name != "version":
                assert new == base + 100, f.name
        assert other.booking_weeks_by_category == {"talking_therapies_ltc": 104, "crisis": 101}
        assert other.escalation_hours == {"urgent": 101, "high": 124, "medium": 172}
        assert other.rtt_weeks_by_category == {
            "pain_management_programme": 118,
            "talking_therapies_ltc": 118,
        }
        assert other.severity == LOADED.severity
        assert other.bank_holidays == LOADED.bank_holidays

    def test_a_later_file_overrides_an_earlier_one_key_by_key(self, tmp_path):
        local = tmp_path / "local.toml"
        local.write_text(
            "[stall]\ntriage_working_days_routine = 5\n"
            "[stall.booking_weeks_by_category]\ncrisis = 2\n"
            "[stall.triage_minutes_by_category]\ncrisis = 240\n"
        )
        other = load_rules(DEFAULT_RULES_FILE, local)
        assert other.triage_working_days_routine == 5
        assert other.booking_weeks_by_category == {"talking_therapies_ltc": 4, "crisis": 2}
        assert other.triage_minutes_by_category == {"crisis": 240}
        unchanged = {f.name for f in dataclasses.fields(Rules)} - {
            "triage_working_days_routine",
            "booking_weeks_by_category",
            "triage_minutes_by_category",
        }
        for name in unchanged:
            assert getattr(other, name) == getattr(LOADED, name), name

    def test_the_worker_reads_the_files_the_environment_lists_in_order(self, tmp_path, monkeypatch):
        from workflows.journeys.activities import RULES_ENV, rules_from_environment

        local = tmp_path / "local.toml"
        local.write_text("[stall.triage_minutes_by_category]\ncrisis = 240\n")
        monkeypatch.setenv(RULES_ENV, f"{DEFAULT_RULES_FILE}:{local}")
        assert rules_from_environment() == dataclasses.replace(
            LOADED, triage_minutes_by_category={"crisis": 240}
        )
        monkeypatch.delenv(RULES_ENV)
        assert rules_from_environment() == LOADED

    def test_a_file_missing_a_threshold_fails_loudly(self, tmp_path):
        path = tmp_path / "rules.toml"
        path.write_text(DEFAULT_RULES_FILE.read_text().replace("weeks = 18\n", ""))
        with pytest.raises(KeyError):
            load_rules(path)


# --- add_working_days -------------------------------------------------------------------------


class TestWorkingDays:
    def test_monday_plus_one_is_tuesday(self):
        assert add_working_days(at(2026, 1, 5), 1, RULES.bank_holidays) == at(2026, 1, 6)

    def test_friday_plus_one_is_the_monday(self):
        assert add_working_days(at(2026, 1, 9), 1, RULES.bank_holidays) == at(2026, 1, 12)

    def test_friday_plus_five_is_the_next_friday(self):
        assert add_working_days(at(2026, 1, 9), 5, RULES.bank_holidays) == at(2026, 1, 16)

    def test_saturday_plus_one_is_monday(self):
        assert add_working_days(at(2026, 1, 10), 1, RULES.bank_holidays) == at(2026, 1, 12)

    def test_sunday_plus_one_is_monday(self):
        assert add_working_days(at(2026, 1, 11), 1, RULES.bank_holidays) == at(2026, 1, 12)

    def test_zero_days_is_the_same_moment_even_at_a_weekend(self):
        assert add_working_days(at(2026, 1, 10, 13, 5), 0, RULES.bank_holidays) == at(
            2026, 1, 10, 13, 5
        )

    def test_the_time_of_day_and_timezone_are_kept(self):
        got = add_working_days(at(2026, 1, 9, 17, 45, 30), 3, RULES.bank_holidays)
        assert got == at(2026, 1, 14, 17, 45, 30)  # Fri -> Mon, Tue, Wed
        assert got.tzinfo is UTC

    def test_good_friday_and_easter_monday_are_skipped(self):
        # Thursday 2 April 2026 + 1: not Fri 3 (Good Friday), not Mon 6 (Easter Monday)
        assert add_working_days(at(2026, 4, 2), 1, RULES.bank_holidays) == at(2026, 4, 7)

    def test_starting_on_good_friday_the_next_working_day_is_the_tuesday(self):
        assert add_working_days(at(2026, 4, 3, 11), 1, RULES.bank_holidays) == at(2026, 4, 7, 11)

    def test_ten_working_days_across_easter(self):
        # Mon 23 Mar: 24, 25, 26, 27, 30, 31 Mar, 1, 2, (3, 6 holidays) 7, 8 Apr
        assert add_working_days(at(2026, 3, 23), 10, RULES.bank_holidays) == at(2026, 4, 8)

    def test_christmas_eve_plus_one_is_the_tuesday_after_christmas(self):
        # Fri 25 Dec and Mon 28 Dec 2026 are bank holidays
        assert add_working_days(at(2026, 12, 24), 1, RULES.bank_holidays) == at(2026, 12, 29)

    def test_two_working_days_over_christmas_2026(self):
        assert add_working_days(at(2026, 12, 23), 2, RULES.bank_holidays) == at(2026, 12, 29)

    def test_new_years_eve_plus_one_skips_new_years_day_2027_and_the_weekend(self):
        assert add_working_days(at(2026, 12, 31), 1, RULES.bank_holidays) == at(2027, 1, 4)

    def test_new_years_day_2026_is_skipped(self):
        assert add_working_days(at(2025, 12, 31), 1, RULES.bank_holidays) == at(2026, 1, 2)

    def test_a_day_is_a_holiday_only_if_listed(self):
        assert add_working_days(at(2026, 12, 24), 1, []) == at(2026, 12, 25)
        assert add_working_days(at(2026, 4, 2), 1, []) == at(2026, 4, 3)


# --- apply_referral_event ---------------------------------------------------------------------


class TestApplyReferralEvent:
    def test_a_new_event_is_applied_and_counted(self):
        state = new_state()
        assert apply_referral_event(state, ev("r1", "submitted", T0)) is True
        ep = only_episode(state)
        assert (ep.referral_id, ep.current.state, ep.submitted_at) == (
            "r1",
            "submitted",
            T0.isoformat(),
        )
        assert (state.events_applied, state.duplicates_ignored) == (1, 0)

    def test_a_repeated_event_id_is_ignored_and_counted_as_duplicate(self):
        state = new_state()
        first = ev("r1", "submitted", T0, event_id="e-1")
        assert apply_referral_event(state, first) is True
        assert apply_referral_event(state, first) is False
        # same id, different payload: still the same event
        assert apply_referral_event(state, ev("r1", "accepted", T0 + HOUR, event_id="e-1")) is False
        assert [s.state for s in only_episode(state).steps] == ["submitted"]
        assert (state.events_applied, state.duplicates_ignored) == (1, 2)

    def test_out_of_order_events_are_kept_in_time_order_with_the_latest_current(self):
        state = journey(
            ev("r1", "booked", at(2026, 1, 8), appointment_at=at(2026, 1, 20)),
            ev("r1", "submitted", at(2026, 1, 5)),
            ev("r1", "accepted", at(2026, 1, 6)),
        )
        ep = only_episode(state)
        assert [s.state for s in ep.steps] == ["submitted", "accepted", "booked"]
        assert ep.current.state == "booked"

    def test_an_older_event_arriving_late_does_not_move_the_state_back(self):
        state = journey(
            ev("r1", "submitted", at(2026, 1, 5)), ev("r1", "attended", at(2026, 1, 20))
        )
        apply_referral_event(state, ev("r1", "accepted", at(2026, 1, 6)))
        ep = only_episode(state)
        assert ep.current.state == "attended"
        assert [s.state for s in ep.steps] == ["submitted", "accepted", "attended"]

    def test_events_with_equal_timestamps_keep_their_arrival_order(self):
        same = at(2026, 1, 20, 11)
        a = journey(ev("r1", "attended", same), ev("r1", "discharged", same))
        b = journey(ev("r1", "discharged", same), ev("r1", "attended", same))
        assert only_episode(a).current.state == "discharged"
        assert only_episode(b).current.state == "attended"
        assert [s.state for s in only_episode(b).steps] == ["discharged", "attended"]

    def test_timestamps_with_other_offsets_are_ordered_by_instant(self):
        state = new_state()
        apply_referral_event(state, ev("r1", "submitted", T0))
        late = ev("r1", "accepted", T0 + HOUR)
        late.occurred_at = "2026-01-05T10:30:00+01:00"  # 09:30 UTC: after submitted
        early = ev("r1", "accepted", T0)
        early.occurred_at = "2026-01-05T09:00:00-01:00"  # 10:00 UTC: after the late one
        apply_referral_event(state, early)
        apply_referral_event(state, late)
        assert [s.at for s in only_episode(state).steps] == [
            T0.isoformat(),
            "2026-01-05T10:30:00+01:00",
            "2026-01-05T09:00:00-01:00",
        ]

    def test_a_flagged_event_changes_no_state(self):
        state = journey(ev("r1", "submitted", T0), ev("r1", "accepted", T0 + HOUR))
        before = stall_deadlines(only_episode(state), RULES)
        flag = ev("r1", "accepted", T0 + 5 * HOUR, event_type="uk.waymark.referral.flagged")
        assert apply_referral_event(state, flag) is True
        ep = only_episode(state)
        assert [s.state for s in ep.steps] == ["submitted", "accepted"]
        assert ep.current.at == (T0 + HOUR).isoformat()
        assert stall_deadlines(ep, RULES) == before
        assert apply_referral_event(state, flag) is False  # but it is remembered
        assert state.duplicates_ignored == 1

    def test_a_flag_arriving_before_its_referral_breaks_nothing(self):
        # events may arrive out of order: a flag for a referral the journey has not seen yet
        state = new_state()
        flag = ev("r-flag", "submitted", T0 + HOUR, event_type="uk.waymark.referral.flagged")
        assert apply_referral_event(state, flag) is True
        # the workflow evaluates after every signal
        assert evaluate(state, RULES, T0 + 2 * HOUR) == []
        assert next_wake(state, RULES, T0 + 2 * HOUR) is None
        apply_referral_event(state, ev("r-other", "submitted", T0))
        assert all(ep.steps for ep in state.episodes), "an episode with no steps"
        assert [e.referral_id for e in state.episodes if e.steps] == ["r-other"]

    def test_the_appointment_is_kept_after_later_events(self):
        appt = at(2026, 1, 22, 14)
        state = journey(
            ev("r1", "submitted", at(2026, 1, 5)),
            ev("r1", "booked", at(2026, 1, 8), appointment_at=appt),
            ev("r1", "attended", appt),
        )
        assert only_episode(state).appointment_at == appt.isoformat()

    def test_a_rebooking_replaces_the_appointment(self):
        first, second = at(2026, 1, 22, 14), at(2026, 2, 3, 10)
        state = journey(
            ev("r1", "booked", at(2026, 1, 8), appointment_at=first),
            ev("r1", "did_not_attend", first),
            ev("r1", "booked", at(2026, 1, 23), appointment_at=second),
        )
        assert only_episode(state).appointment_at == second.isoformat()

    def test_an_older_booking_arriving_late_does_not_overwrite_the_appointment(self):
        first, second = at(2026, 1, 22, 14), at(2026, 2, 3, 10)
        state = journey(
            ev("r1", "booked", at(2026, 1, 23), appointment_at=second),
            ev("r1", "booked", at(2026, 1, 8), appointment_at=first),
        )
        assert only_episode(state).appointment_at == second.isoformat()

    def test_episodes_are_sorted_by_their_first_step(self):
        state = journey(
            ev("r-late", "submitted", at(2026, 3, 1)),
            ev("r-early", "submitted", at(2026, 2, 1)),
            ev("r-mid", "submitted", at(2026, 2, 15)),
        )
        assert [e.referral_id for e in state.episodes] == ["r-early", "r-mid", "r-late"]

    def test_an_earlier_first_step_arriving_late_resorts_the_episodes(self):
        state = journey(ev("r1", "accepted", at(2026, 3, 1)), ev("r2", "submitted", at(2026, 2, 1)))
        assert [e.referral_id for e in state.episodes] == ["r2", "r1"]
        apply_referral_event(state, ev("r1", "submitted", at(2026, 1, 20)))
        assert [e.referral_id for e in state.episodes] == ["r1", "r2"]

    def test_episodes_starting_at_the_same_time_are_ordered_by_referral_id(self):
        state = journey(ev("r-b", "submitted", T0), ev("r-a", "submitted", T0))
        assert [e.referral_id for e in state.episodes] == ["r-a", "r-b"]

    def test_the_episode_keeps_the_service_it_was_referred_to(self):
        state = journey(
            ev("r1", "submitted", T0, category="talking_therapies_ltc", priority="urgent")
        )
        ep = only_episode(state)
        assert (ep.service_id, ep.category, ep.priority) == (
            "svc-talking-therapies-ltc",
            "talking_therapies_ltc",
            "urgent",
        )

    def test_remembered_event_ids_are_bounded_by_the_seen_window(self):
        state = new_state()
        state.seen_event_ids = [f"old-{i}" for i in range(SEEN_WINDOW)]
        assert apply_referral_event(state, ev("r1", "submitted", T0, event_id="new-1"))
        assert len(state.seen_event_ids) == SEEN_WINDOW
        assert "old-0" not in state.seen_event_ids  # the oldest is forgotten
        assert state.seen_event_ids[0] == "old-1" and state.seen_event_ids[-1] == "new-1"
        assert apply_referral_event(state, ev("r1", "accepted", T0, event_id="old-1")) is False
        assert apply_referral_event(state, ev("r1", "accepted", T0, event_id="new-1")) is False

    def test_within_the_window_nothing_is_forgotten(self):
        state = new_state()
        for i in range(30):
            apply_referral_event(state, ev("r1", "on_hold", T0 + i * HOUR, event_id=f"e{i}"))
        assert state.seen_event_ids == [f"e{i}" for i in range(30)]
        assert all(
            apply_referral_event(state, ev("r1", "on_hold", T0, event_id=f"e{i}")) is False
            for i in range(30)
        )
        assert state.duplicates_ignored == 30

    def test_assessments_are_deduplicated_by_event_id_too(self):
        state = new_state()
        a = assess("phq-1", T0, event_id="as-1")
        assert apply_assessment(state, a) is True
        assert apply_assessment(state, a) is False
        assert len(state.assessments) == 1 and state.duplicates_ignored == 1


# --- stall_deadlines --------------------------------------------------------------------------


class TestStallDeadlines:
    def test_a_routine_submission_has_ten_working_days_to_triage_and_an_rtt_clock(self):
        ep = only_episode(journey(ev("r1", "submitted", T0)))
        # Mon 5 Jan + 10 working days = Mon 19 Jan; + 18 weeks = Mon 11 May
        assert deadlines(ep) == {
            "stalled.not_triaged": at(2026, 1, 19),
            "stalled.rtt_breach": at(2026, 5, 11),
        }

    def test_an_urgent_submission_has_two_working_days_to_triage(self):
        ep = only_episode(journey(ev("r1", "submitted", T0, priority="urgent")))
        assert deadlines(ep)["stalled.not_triaged"] == at(2026, 1, 7)

    def test_an_urgent_triage_deadline_skips_easter(self):
        ep = only_episode(journey(ev("r1", "submitted", at(2026, 4, 2), priority="urgent")))
        assert deadlines(ep)["stalled.not_triaged"] == at(2026, 4, 8)

    def test_a_routine_triage_deadline_skips_christmas_and_new_year(self):
        # Mon 14 Dec 2026: 15-18, 21-24, (25, 28 holidays) 29, 30 Dec
        ep = only_episode(journey(ev("r1", "submitted", at(2026, 12, 14))))
        assert deadlines(ep)["stalled.not_triaged"] == at(2026, 12, 30)

    def test_a_category_with_a_triage_time_in_minutes_counts_clock_minutes(self):
        rules = dataclasses.replace(RULES, triage_minutes_by_category={"crisis": 240})
        # Friday 2 January 2026, 22:30: four hours later is Saturday 02:30, weekend or not,
        # for routine and urgent referrals alike; the RTT clock is unchanged
        for priority in ("routine", "urgent"):
            ep = only_episode(
                journey(
                    ev(
                        "r1",
                        "submitted",
                        at(2026, 1, 2, 22, 30),
                        category="crisis",
                        priority=priority,
                    )
                )
            )
            assert deadlines(ep, rules) == {
                "stalled.not_triaged": at(2026, 1, 3, 2, 30),
                "stalled.rtt_breach": at(2026, 5, 8, 22, 30),
            }
        # other categories keep their working days
        ep = only_episode(journey(ev("r1", "submitted", T0)))
        assert deadlines(ep, rules)["stalled.not_triaged"] == at(2026, 1, 19)

    def test_a_triage_time_in_minutes_raises_its_stall_exactly_then(self):
        rules = dataclasses.replace(RULES, triage_minutes_by_category={"crisis": 1})

        def build() -> JourneyState:
            return journey(ev("r1", "submitted", T0, category="crisis"))

        due = T0 + timedelta(minutes=1)
        assert next_wake(build(), rules, T0) == due
        assert raised(evaluate(build(), rules, due - SECOND)) == []
        alerts = raised(evaluate(build(), rules, due))
        assert [(a.rule, a.raised_at) for a in alerts] == [("stalled.not_triaged", due.isoformat())]
        assert alerts[0].explanation == (
            "Referred to the crisis service on 5 January 2026 and not triaged by 5 January 2026."
        )

    def test_accepted_has_six_weeks_to_book_by_default(self):
        kw = {"category": "msk_physiotherapy"}
        ep = only_episode(
            journey(ev("r1", "submitted", at(2026, 1, 2), **kw), ev("r1", "accepted", T0, **kw))
        )
        assert deadlines(ep)["stalled.not_booked"] == at(2026, 2, 16)
        assert "stalled.not_triaged" not in deadlines(ep)

    def test_talking_therapies_have_four_weeks_to_book(self):
        kw = {"category": "talking_therapies_ltc"}
        ep = only_episode(
            journey(ev("r1", "submitted", at(2026, 1, 2), **kw), ev("r1", "accepted", T0, **kw))
        )
        assert deadlines(ep)["stalled.not_booked"] == at(2026, 2, 2)

    def test_the_crisis_service_has_one_week_to_book(self):
        ep = only_episode(journey(ev("r1", "accepted", T0, category="crisis")))
        assert deadlines(ep) == {"stalled.not_booked": at(2026, 1, 12)}

    def test_booked_allows_two_working_days_after_the_appointment(self):
        ep = only_episode(journey(ev("r1", "booked", T0, appointment_at=at(2026, 1, 22, 14))))
        # Thu 22 Jan 14:00 + 2 working days = Mon 26 Jan 14:00
        assert deadlines(ep)["stalled.no_outcome"] == at(2026, 1, 26, 14)

    def test_booked_grace_skips_christmas(self):
        ep = only_episode(
            journey(ev("r1", "booked", at(2026, 12, 14, 10), appointment_at=at(2026, 12, 24, 10)))
        )
        assert deadlines(ep)["stalled.no_outcome"] == at(2026, 12, 30, 10)

    def test_booked_without_an_appointment_counts_from_the_booking(self):
        ep = only_episode(journey(ev("r1", "booked", at(2026, 1, 9))))
        assert deadlines(ep)["stalled.no_outcome"] == at(2026, 1, 13)

    def test_an_appointment_before_the_booking_counts_from_the_booking(self):
        ep = only_episode(
            journey(ev("r1", "booked", at(2026, 1, 9), appointment_at=at(2026, 1, 2)))
        )
        assert deadlines(ep)["stalled.no_outcome"] == at(2026, 1, 13)

    @pytest.mark.parametrize("state", ["on_hold", "did_not_attend", "attended"])
    def test_states_without_their_own_deadline_have_a_no_activity_deadline(self, state):
        ep = only_episode(journey(ev("r1", state, T0)))
        assert deadlines(ep) == {"stalled.no_activity": at(2026, 2, 16)}

    def test_the_rtt_clock_runs_until_the_first_attendance(self):
        state = journey(
            ev("r1", "submitted", T0),
            ev("r1", "accepted", at(2026, 1, 6)),
            ev("r1", "booked", at(2026, 1, 7), appointment_at=at(2026, 1, 20)),
            ev("r1", "did_not_attend", at(2026, 1, 20)),
        )
        assert deadlines(only_episode(state))["stalled.rtt_breach"] == at(2026, 5, 11)
        apply_referral_event(
            state, ev("r1", "booked", at(2026, 1, 21), appointment_at=at(2026, 2, 2))
        )
        apply_referral_event(state, ev("r1", "attended", at(2026, 2, 2)))
        assert "stalled.rtt_breach" not in deadlines(only_episode(state))
        apply_referral_event(
            state, ev("r1", "booked", at(2026, 2, 3), appointment_at=at(2026, 2, 10))
        )
        assert set(deadlines(only_episode(state))) == {"stalled.no_outcome"}

    def test_the_rtt_deadline_is_about_the_submission_not_the_current_state(self):
        state = journey(ev("r1", "submitted", T0), ev("r1", "accepted", at(2026, 1, 6)))
        rtt = [
            d for d in stall_deadlines(only_episode(state), RULES) if d.rule == "stalled.rtt_breach"
        ]
        assert [(d.state_at, d.referral_id) for d in rtt] == [(T0.isoformat(), "r1")]

    def test_a_referral_never_submitted_here_has_no_rtt_clock(self):
        ep = only_episode(journey(ev("r1", "accepted", T0)))
        assert "stalled.rtt_breach" not in deadlines(ep)

    @pytest.mark.parametrize("closed", ["rejected", "returned", "discharged", "cancelled"])
    def test_closed_referrals_have_no_deadlines(self, closed):
        ep = only_episode(journey(ev("r1", "submitted", T0), ev("r1", closed, T0 + HOUR)))
        assert stall_deadlines(ep, RULES) == []

    def test_a_draft_has_no_deadlines(self):
        assert stall_deadlines(only_episode(journey(ev("r1", "draft", T0))), RULES) == []

    def test_each_deadline_names_when_the_state_was_entered(self):
        state = journey(ev("r1", "submitted", T0), ev("r1", "accepted", at(2026, 1, 6, 15)))
        booking = [
            d for d in stall_deadlines(only_episode(state), RULES) if d.rule == "stalled.not_booked"
        ]
        assert [d.state_at for d in booking] == [at(2026, 1, 6, 15).isoformat()]


# --- evaluate: stalls -------------------------------------------------------------------------


class TestStallAlerts:
    @pytest.mark.parametrize(
        ("name", "events", "rule", "due"),
        [
            ("routine triage", [("submitted", T0, None)], "stalled.not_triaged", at(2026, 1, 19)),
            (
                "booking",
                [("submitted", at(2026, 1, 2), None), ("accepted", T0, None)],
                "stalled.not_booked",
                at(2026, 2, 16),
            ),
            (
                "outcome",
                [("booked", at(2026, 12, 14, 10), at(2026, 12, 24, 10))],
                "stalled.no_outcome",
                at(2026, 12, 30, 10),
            ),
            ("activity", [("on_hold", T0, None)], "stalled.no_activity", at(2026, 2, 16)),
            (
                "rtt",
                [
                    ("submitted", T0, None),
                    ("accepted", at(2026, 1, 6), None),
                    ("on_hold", at(2026, 4, 20), None),
                ],
                "stalled.rtt_breach",
                at(2026, 5, 11),
            ),
        ],
    )
    def test_a_stall_is_raised_exactly_at_its_deadline_not_a_second_before(
        self, name, events, rule, due
    ):
        def build() -> JourneyState:
            return journey(*[ev("r1", s, w, appointment_at=appt) for s, w, appt in events])

        early = build()
        assert raised(evaluate(early, RULES, due - SECOND), rule) == [], name
        on_time = build()
        alerts = raised(evaluate(on_time, RULES, due), rule)
        assert len(alerts) == 1, name
        assert alerts[0].kind == "stalled" and alerts[0].status == "open"
        assert alerts[0].raised_at == due.isoformat()
        assert alerts[0].referral_id == "r1"

    def test_an_urgent_triage_stall_is_raised_after_two_working_days(self):
        def build() -> JourneyState:
            return journey(ev("r1", "submitted", at(2026, 4, 2), priority="urgent"))

        assert raised(evaluate(build(), RULES, at(2026, 4, 8) - SECOND)) == []
        assert [a.rule for a in raised(evaluate(build(), RULES, at(2026, 4, 8)))] == [
            "stalled.not_triaged"
        ]

    def test_a_stall_alert_resolves_itself_when_the_referral_moves_on(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        alert = alert_for(state, "stalled.not_triaged")
        apply_referral_event(state, ev("r1", "accepted", at(2026, 1, 20, 10)))
        changes = evaluate(state, RULES, at(2026, 1, 20, 10, 0, 10))
        assert [(c.change, c.alert.alert_id) for c in changes] == [("resolved", alert.alert_id)]
        assert alert.status == "resolved"
        assert alert.resolved_at == at(2026, 1, 20, 10, 0, 10).isoformat()
        assert alert.resolution == "the referral moved on (now accepted)"

    def test_a_stall_alert_resolves_when_the_referral_is_closed(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        apply_referral_event(state, ev("r1", "rejected", at(2026, 1, 21)))
        changes = evaluate(state, RULES, at(2026, 1, 21, 9, 1))
        assert [c.change for c in changes] == ["resolved"]
        assert "rejected" in changes[0].alert.resolution

    def test_the_rtt_alert_stays_while_the_referral_moves_and_resolves_at_attendance(self):
        state = journey(
            ev("r1", "submitted", T0),
            ev("r1", "accepted", at(2026, 1, 6)),
            ev("r1", "on_hold", at(2026, 4, 20)),
        )
        evaluate(state, RULES, at(2026, 5, 11))
        rtt = alert_for(state, "stalled.rtt_breach")
        apply_referral_event(
            state, ev("r1", "booked", at(2026, 5, 12), appointment_at=at(2026, 5, 20))
        )
        changes = evaluate(state, RULES, at(2026, 5, 12, 10))
        assert rtt.status != "resolved"
        assert [c.alert.rule for c in changes if c.change == "resolved"] == []
        apply_referral_event(state, ev("r1", "attended", at(2026, 5, 20)))
        changes = evaluate(state, RULES, at(2026, 5, 20, 10))
        assert [c.alert.rule for c in changes if c.change == "resolved"] == ["stalled.rtt_breach"]

    def test_moving_on_before_the_deadline_raises_nothing(self):
        state = journey(ev("r1", "submitted", T0), ev("r1", "accepted", at(2026, 1, 16)))
        assert raised(evaluate(state, RULES, at(2026, 1, 19)), "stalled.not_triaged") == []

    def test_a_new_state_gets_its_own_stall_alert(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        apply_referral_event(state, ev("r1", "accepted", at(2026, 1, 20)))
        evaluate(state, RULES, at(2026, 1, 20, 10))
        # accepted Tue 20 Jan + 6 weeks = Tue 3 Mar
        assert raised(evaluate(state, RULES, at(2026, 3, 3) - SECOND)) == []
        assert [a.rule for a in raised(evaluate(state, RULES, at(2026, 3, 3)))] == [
            "stalled.not_booked"
        ]

    def test_stalls_can_be_left_for_later_while_events_settle(self):
        state = journey(ev("r1", "submitted", T0))
        assert evaluate(state, RULES, at(2026, 1, 19), stalls=False) == []
        assert len(raised(evaluate(state, RULES, at(2026, 1, 19)))) == 1

    def test_stall_alerts_have_the_severity_of_their_rule(self):
        state = journey(ev("r1", "submitted", T0), ev("r2", "on_hold", T0))
        evaluate(state, RULES, at(2026, 5, 11))
        by_rule = {a.rule: a.severity for a in state.alerts}
        assert by_rule == {
            "stalled.not_triaged": "high",
            "stalled.rtt_breach": "high",
            "stalled.no_activity": "medium",
        }

    def test_the_rtt_explanation_states_the_configured_weeks(self):
        rules = dataclasses.replace(RULES, rtt_weeks=12)
        state = journey(
            ev("r1", "submitted", T0),
            ev("r1", "accepted", at(2026, 1, 6)),
            ev("r1", "on_hold", at(2026, 3, 2)),
        )
        # 5 January + 12 weeks = Monday 30 March
        alerts = raised(evaluate(state, rules, at(2026, 3, 30)), "stalled.rtt_breach")
        assert len(alerts) == 1
        assert "12 weeks" in alerts[0].explanation, alerts[0].explanation


# --- evaluate: loops --------------------------------------------------------------------------

TT, MSK, PAIN = "talking_therapies_ltc", "msk_physiotherapy", "pain_management_programme"


class TestReReferral:
    def _first_then_again(
        self,
        ending: str,
        *,
        again: datetime | None = None,
        category: str = TT,
        service: str | None = None,
    ) -> list[AlertChange]:
        again = again or at(2026, 2, 2)
        state = new_state()
        refer(state, "r1", ("submitted", at(2026, 1, 2)), (ending, T0), category=TT)
        refer(state, "r2", ("submitted", again), category=category, service=service)
        return evaluate(state, RULES, again + HOUR)

    @pytest.mark.parametrize(
        ("ending", "verb"),
        [("rejected", "did not accept"), ("returned", "returned"), ("discharged", "discharged")],
    )
    def test_re_referral_to_the_same_service_after_it_ended_is_a_loop(self, ending, verb):
        alerts = raised(self._first_then_again(ending), "looping.re_referral")
        assert len(alerts) == 1
        a = alerts[0]
        assert (a.kind, a.severity, a.referral_id) == ("looping", "high", "r2")
        assert a.explanation == (
            f"Referred again to talking therapies on 2 February 2026, "
            f"28 days after it {verb} them on 5 January 2026."
        )
        assert [e.referral_id for e in a.evidence] == ["r1", "r2"]
        assert [e.state for e in a.evidence] == [ending, "submitted"]

    def test_re_referral_after_a_cancellation_is_not_a_loop(self):
        assert raised(self._first_then_again("cancelled"), "looping.re_referral") == []

    def test_re_referral_to_another_service_of_the_same_category_is_a_loop(self):
        changes = self._first_then_again("rejected", service="svc-other-talking-therapies")
        assert len(raised(changes, "looping.re_referral")) == 1

    def test_re_referral_to_the_same_service_under_another_category_is_a_loop(self):
        changes = self._first_then_again("rejected", category=MSK, service=SERVICES[TT])
        assert len(raised(changes, "looping.re_referral")) == 1

    def test_referral_to_a_different_service_and_category_is_not_a_loop(self):
        assert raised(self._first_then_again("rejected", category=MSK), "looping.re_referral") == []

    def test_re_referral_exactly_at_the_end_of_the_window_is_a_loop(self):
        again = T0 + timedelta(days=RULES.rereferral_window_days)
        assert (
            len(raised(self._first_then_again("rejected", again=again), "looping.re_referral")) == 1
        )

    def test_re_referral_a_second_after_the_window_is_not_a_loop(self):
        again = T0 + timedelta(days=RULES.rereferral_window_days) + SECOND
        assert raised(self._first_then_again("rejected", again=again), "looping.re_referral") == []

    def test_a_closure_after_the_new_submission_is_not_a_loop(self):
        state = new_state()
        refer(state, "r1", ("submitted", at(2026, 1, 2)), category=TT)
        refer(state, "r2", ("submitted", at(2026, 1, 10)), category=TT)
        refer(state, "r1", ("rejected", at(2026, 1, 20)), category=TT)
        assert raised(evaluate(state, RULES, at(2026, 1, 20, 10)), "looping.re_referral") == []

    def test_a_loop_is_raised_once_however_often_it_is_evaluated(self):
        state = new_state()
        refer(state, "r1", ("submitted", at(2026, 1, 2)), ("rejected", T0), category=TT)
        refer(state, "r2", ("submitted", at(2026, 2, 2)), category=TT)
        first = raised(evaluate(state, RULES, at(2026, 2, 2, 10)), "looping.re_referral")
        again = raised(evaluate(state, RULES, at(2026, 2, 3, 10)), "looping.re_referral")
        assert (len(first), again) == (1, [])


class TestPingPong:
    def _three(
        self, cats: tuple[str, str, str], third: datetime | None = None
    ) -> list[AlertChange]:
        third = third or at(2026, 3, 2)
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("cancelled", T0 + HOUR), category=cats[0])
        refer(
            state,
            "r2",
            ("submitted", at(2026, 2, 2)),
            ("cancelled", at(2026, 2, 3)),
            category=cats[1],
        )
        refer(state, "r3", ("submitted", third), category=cats[2])
        return evaluate(state, RULES, third + HOUR)

    def test_a_to_b_and_back_to_a_within_the_window_is_a_loop(self):
        alerts = raised(self._three((TT, MSK, TT)), "looping.ping_pong")
        assert len(alerts) == 1
        a = alerts[0]
        assert (a.severity, a.referral_id, a.alert_id) == (
            "high",
            "r3",
            f"{PATIENT}:looping.ping_pong:r3",
        )
        assert a.explanation == (
            "Went from talking therapies to MSK physiotherapy and back to "
            "talking therapies between 5 January 2026 and 2 March 2026."
        )
        assert [e.referral_id for e in a.evidence] == ["r1", "r2", "r3"]

    def test_a_to_b_to_a_exactly_at_the_window_is_a_loop(self):
        third = T0 + timedelta(days=RULES.ping_pong_window_days)
        assert len(raised(self._three((TT, MSK, TT), third), "looping.ping_pong")) == 1

    def test_a_to_b_to_a_outside_the_window_is_not_a_loop(self):
        third = T0 + timedelta(days=RULES.ping_pong_window_days) + SECOND
        assert raised(self._three((TT, MSK, TT), third), "looping.ping_pong") == []

    def test_a_to_b_to_c_is_not_a_loop(self):
        assert raised(self._three((TT, MSK, PAIN))) == []

    def test_a_to_b_to_b_is_not_a_ping_pong(self):
        assert raised(self._three((TT, MSK, MSK)), "looping.ping_pong") == []


class TestReturnedRepeatedly:
    def _two_returns(self) -> JourneyState:
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", T0),
            ("returned", at(2026, 1, 8)),
            category=TT,
            reason="advice-and-guidance-given",
        )
        refer(
            state,
            "r2",
            ("submitted", at(2026, 2, 2)),
            ("returned", at(2026, 2, 5)),
            category=MSK,
            reason="not-accepted",
        )
        return state

    def test_returned_twice_within_the_window_is_a_loop(self):
        state = self._two_returns()
        alerts = raised(evaluate(state, RULES, at(2026, 2, 6)), "looping.returned_repeatedly")
        assert len(alerts) == 1
        a = alerts[0]
        # keyed by the newest return in the run: the same run never raises twice
        assert (a.key, a.severity) == (
            f"looping.returned_repeatedly:r2:{at(2026, 2, 5).isoformat()}",
            "medium",
        )
        assert a.explanation == (
            "Returned to the referrer 2 times in 6 months "
            "(by MSK physiotherapy, talking therapies)."
        )
        assert [(e.referral_id, e.detail) for e in a.evidence] == [
            ("r1", "advice-and-guidance-given"),
            ("r2", "not-accepted"),
        ]

    def test_returned_once_is_not_a_loop(self):
        state = new_state()
        refer(state, "r1", ("submitted", T0), ("returned", at(2026, 1, 8)), category=TT)
        assert raised(evaluate(state, RULES, at(2026, 1, 9)), "looping.returned_repeatedly") == []

    def test_a_return_at_the_edge_of_the_window_still_counts(self):
        edge = at(2026, 1, 8) + timedelta(days=RULES.returned_window_days)
        assert (
            len(raised(evaluate(self._two_returns(), RULES, edge), "looping.returned_repeatedly"))
            == 1
        )

    def test_a_return_a_second_older_than_the_window_does_not_count(self):
        late = at(2026, 1, 8) + timedelta(days=RULES.returned_window_days) + SECOND
        assert (
            raised(evaluate(self._two_returns(), RULES, late), "looping.returned_repeatedly") == []
        )

    def test_no_second_alert_while_one_is_open(self):
        state = self._two_returns()
        evaluate(state, RULES, at(2026, 2, 6))
        refer(
            state, "r3", ("submitted", at(2026, 2, 9)), ("returned", at(2026, 2, 10)), category=PAIN
        )
        assert raised(evaluate(state, RULES, at(2026, 2, 11)), "looping.returned_repeatedly") == []

    def test_a_higher_count_after_resolving_raises_a_new_alert(self):
        state = self._two_returns()
        evaluate(state, RULES, at(2026, 2, 6))
        first = alert_for(state, "looping.returned_repeatedly")
        apply_action(state, act(first.alert_id, "resolve", at(2026, 2, 7)))
        assert raised(evaluate(state, RULES, at(2026, 2, 8)), "looping.returned_repeatedly") == []
        refer(
            state, "r3", ("submitted", at(2026, 2, 9)), ("returned", at(2026, 2, 10)), category=PAIN
        )
        alerts = raised(evaluate(state, RULES, at(2026, 2, 11)), "looping.returned_repeatedly")
        assert [a.key for a in alerts] == [
            f"looping.returned_repeatedly:r3:{at(2026, 2, 10).isoformat()}"
        ]
        assert [e.referral_id for e in alerts[0].evidence] == ["r1", "r2", "r3"]

    def test_a_fresh_pair_of_returns_months_later_raises_a_new_alert(self):
        state = self._two_returns()
        evaluate(state, RULES, at(2026, 2, 6))
        first = alert_for(state, "looping.returned_repeatedly")
        apply_action(state, act(first.alert_id, "resolve", at(2026, 2, 7)))
        # both earlier returns are long out of the 182-day window by November
        refer(
            state,
            "r3",
            ("submitted", at(2026, 9, 28)),
            ("returned", at(2026, 10, 1)),
            category=PAIN,
        )
        refer(
            state,
            "r4",
            ("submitted", at(2026, 10, 26)),
            ("returned", at(2026, 11, 2)),
            category="peer_support",
        )
        alerts = raised(evaluate(state, RULES, at(2026, 11, 3)), "looping.returned_repeatedly")
        assert len(alerts) == 1, "two new returns in six months raised no alert"
        assert [e.referral_id for e in alerts[0].evidence] == ["r3", "r4"]


class TestFrequentContact:
    def _contacts(self, first: datetime) -> JourneyState:
        """Four contacts: two referrals, each attended once, the first contact at `first`."""
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", first),
            ("accepted", first + timedelta(days=1)),
            ("booked", first + timedelta(days=2)),
            ("attended", first + timedelta(days=10)),
            ("discharged", first + timedelta(days=20)),
            category=PAIN,
        )
        refer(
            state,
            "r2",
            ("submitted", first + timedelta(days=40)),
            ("attended", first + timedelta(days=50)),
            ("discharged", first + timedelta(days=55)),
            category=MSK,
        )
        return state

    def test_four_referrals_and_attendances_in_the_window_are_a_loop(self):
        state = self._contacts(at(2026, 2, 2))
        alerts = raised(evaluate(state, RULES, at(2026, 6, 1)), "looping.frequent_contact")
        assert len(alerts) == 1
        a = alerts[0]
        assert a.key.startswith("looping.frequent_contact:r2:") and a.severity == "medium"
        assert a.explanation == (
            "4 contacts in 6 months across 2 services (2 referrals, 2 attendances)."
        )
        assert sorted((e.referral_id, e.state) for e in a.evidence) == [
            ("r1", "attended"),
            ("r1", "submitted"),
            ("r2", "attended"),
            ("r2", "submitted"),
        ]

    def test_three_contacts_are_not_a_loop(self):
        state = new_state()
        refer(
            state,
            "r1",
            ("submitted", at(2026, 2, 2)),
            ("attended", at(2026, 2, 12)),
            ("discharged", at(2026, 2, 20)),
            category=PAIN,
        )
        refer(state, "r2", ("submitted", at(2026, 3, 2)), category=MSK)
        assert raised(evaluate(state, RULES, at(2026, 3, 3)), "looping.frequent_contact") == []

    def test_a_contact_at_the_edge_of_the_window_counts(self):
        first = at(2026, 2, 2)
        edge = first + timedelta(days=RULES.frequent_window_days)
        assert (
            len(raised(evaluate(self._contacts(first), RULES, edge), "looping.frequent_contact"))
            == 1
        )

    def test_a_contact_older_than_the_window_does_not_count(self):
        first = at(2026, 2, 2)
        late = first + timedelta(days=RULES.frequent_window_days) + SECOND
        assert (
            raised(evaluate(self._contacts(first), RULES, late), "looping.frequent_contact") == []
        )

    def test_no_second_alert_while_one_is_open(self):
        state = self._contacts(at(2026, 2, 2))
        evaluate(state, RULES, at(2026, 6, 1))
        refer(state, "r3", ("submitted", at(2026, 6, 2)), category="social_prescribing")
        assert raised(evaluate(state, RULES, at(2026, 6, 3)), "looping.frequent_contact") == []


# --- evaluate: safety -------------------------------------------------------------------------


class TestSafety:
    def test_phq9_item9_above_zero_is_an_urgent_alert_at_once(self):
        state = new_state()
        apply_assessment(state, assess("phq-1", T0, item9=1, band="mild", total=6))
        alerts = raised(evaluate(state, RULES, T0))
        assert [a.rule for a in alerts] == ["safety.phq9_item9"]
        a = alerts[0]
        assert (a.kind, a.severity, a.alert_id) == (
            "safety",
            "urgent",
            f"{PATIENT}:safety.phq9_item9:phq-1",
        )
        assert a.explanation.startswith("PHQ-9 on 5 January 2026: item 9")
        assert "answered above 0" in a.explanation and "today" in a.explanation
        assert [e.referral_id for e in a.evidence] == [None]

    def test_the_care_plans_safety_flag_raises_it_without_the_answer(self):
        # care-plan events carry the flag, never the item's answer
        state = new_state()
        ev = assess("phq-2", T0, item9=None, band="mild", total=6)
        ev.safety_flag = True
        apply_assessment(state, ev)
        assert [a.rule for a in raised(evaluate(state, RULES, T0))] == ["safety.phq9_item9"]

    def test_no_flag_and_no_item9_raises_nothing(self):
        state = new_state()
        apply_assessment(state, assess("phq-3", T0, item9=None, band="mild", total=6))
        assert raised(evaluate(state, RULES, T0)) == []

    def test_phq9_item9_of_zero_is_not_an_alert(self):
        state = new_state()
        apply_assessment(state, assess("phq-1", T0, item9=0, band="moderately_severe", total=17))
        assert evaluate(state, RULES, T0) == []

    def test_item9_is_only_read_for_phq9(self):
        state = new_state()
        apply_assessment(state, assess("gad-1", T0, instrument="GAD-7", band="mild", item9=3))
        assert evaluate(state, RULES, T0) == []

    @pytest.mark.parametrize(
        ("instrument", "band", "words"),
        [
            ("GAD-7", "severe", "severe band"),
            ("PHQ-9", "severe", "severe band"),
            ("STarT-Back", "high", "high risk band"),
        ],
    )
    def test_a_high_risk_band_of_any_instrument_is_an_urgent_alert(self, instrument, band, words):
        state = new_state()
        apply_assessment(
            state,
            assess(
                "a-1",
                T0,
                instrument=instrument,
                band=band,
                total=19,
                item9=0 if instrument == "PHQ-9" else None,
            ),
        )
        alerts = raised(evaluate(state, RULES, T0))
        assert [(a.rule, a.severity) for a in alerts] == [("safety.high_risk_band", "urgent")]
        assert (
            alerts[0].explanation == f"{instrument} on 5 January 2026 is in the {words} (score 19)."
        )

    @pytest.mark.parametrize(
        ("instrument", "band"),
        [
            ("GAD-7", "minimal"),
            ("GAD-7", "mild"),
            ("GAD-7", "moderate"),
            ("PHQ-9", "minimal"),
            ("PHQ-9", "moderate"),
            ("PHQ-9", "moderately_severe"),
            ("STarT-Back", "low"),
            ("STarT-Back", "medium"),
            ("GAD-7", "high"),
            ("STarT-Back", "severe"),
            ("Unknown-7", "severe"),
        ],
    )
    def test_other_bands_are_not_alerts(self, instrument, band):
        """Only an instrument's own high-risk bands: GAD-7 has no `high`, STarT Back no
        `severe`, and an instrument the vocabulary does not know raises nothing."""
        state = new_state()
        apply_assessment(state, assess("a-1", T0, instrument=instrument, band=band, item9=None))
        assert evaluate(state, RULES, T0) == []

    def test_a_journey_started_before_the_vocabulary_replays_its_old_decisions(self):
        """Recorded histories must replay: the legacy rules never alerted on STarT Back high
        (the missed alert of issue #15), so on replay they still do not."""
        state = new_state()
        apply_assessment(
            state, assess("sb-1", T0, instrument="STarT-Back", band="high", item9=None)
        )
        assert evaluate(state, LEGACY, T0) == []
        assert [a.rule for a in raised(evaluate(state, RULES, T0))] == ["safety.high_risk_band"]

    def test_item9_and_a_severe_band_raise_both_alerts(self):
        state = new_state()
        apply_assessment(state, assess("phq-1", T0, item9=2, band="severe", total=24))
        assert sorted(a.rule for a in raised(evaluate(state, RULES, T0))) == [
            "safety.high_risk_band",
            "safety.phq9_item9",
        ]

    def test_each_assessment_is_its_own_alert(self):
        state = new_state()
        apply_assessment(state, assess("phq-1", T0, item9=1))
        apply_assessment(state, assess("phq-2", at(2026, 2, 2), item9=1))
        assert [a.key for a in raised(evaluate(state, RULES, at(2026, 2, 2)))] == [
            "safety.phq9_item9:phq-1",
            "safety.phq9_item9:phq-2",
        ]


# --- evaluate: escalation and snooze ----------------------------------------------------------


class TestEscalation:
    def test_an_urgent_alert_escalates_exactly_one_hour_after_it_was_raised(self):
        state, alert = safety_state()
        assert escalation_due(alert, RULES) == T0 + HOUR
        assert evaluate(state, RULES, T0 + HOUR - SECOND) == []
        changes = evaluate(state, RULES, T0 + HOUR)
        assert [(c.change, c.alert.alert_id) for c in changes] == [("escalated", alert.alert_id)]
        assert (alert.status, alert.escalated_at) == ("escalated", (T0 + HOUR).isoformat())

    def test_a_high_alert_escalates_after_24_hours(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        alert = alert_for(state, "stalled.not_triaged")
        assert escalation_due(alert, RULES) == at(2026, 1, 20)
        assert changed(evaluate(state, RULES, at(2026, 1, 20) - SECOND), "escalated") == []
        assert changed(evaluate(state, RULES, at(2026, 1, 20)), "escalated") == [alert]

    def test_a_medium_alert_escalates_after_72_hours(self):
        state = journey(ev("r1", "accepted", T0, category=MSK))
        evaluate(state, RULES, at(2026, 2, 16))
        alert = alert_for(state, "stalled.not_booked")
        assert alert.severity == "medium"
        assert escalation_due(alert, RULES) == at(2026, 2, 19)
        assert changed(evaluate(state, RULES, at(2026, 2, 19) - SECOND), "escalated") == []
        assert changed(evaluate(state, RULES, at(2026, 2, 19)), "escalated") == [alert]

    def test_an_escalated_alert_escalates_only_once(self):
        state, alert = safety_state()
        evaluate(state, RULES, T0 + HOUR)
        assert evaluate(state, RULES, T0 + 30 * HOUR) == []
        assert alert.escalated_at == (T0 + HOUR).isoformat()

    def test_an_acknowledged_alert_never_escalates(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "acknowledge", T0 + 10 * timedelta(minutes=1)))
        for later in (T0 + HOUR, T0 + timedelta(days=3), T0 + timedelta(days=400)):
            assert evaluate(state, RULES, later) == []
        assert alert.status == "acknowledged" and alert.escalated_at is None

    def test_a_resolved_alert_never_escalates(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "resolve", T0 + timedelta(minutes=5)))
        assert evaluate(state, RULES, T0 + timedelta(days=30)) == []
        assert alert.status == "resolved"

    def test_an_escalated_alert_can_still_be_acknowledged(self):
        state, alert = safety_state()
        evaluate(state, RULES, T0 + HOUR)
        changes = apply_action(state, act(alert.alert_id, "acknowledge", T0 + 2 * HOUR))
        assert [c.change for c in changes] == ["acknowledged"]
        assert alert.status == "acknowledged"


class TestSnooze:
    def test_a_snoozed_alert_reopens_at_until_and_not_before(self):
        state, alert = safety_state()
        until = T0 + timedelta(days=3)
        apply_action(state, act(alert.alert_id, "snooze", T0 + timedelta(minutes=10), until=until))
        assert evaluate(state, RULES, T0 + 2 * HOUR) == []  # no escalation while snoozed
        assert evaluate(state, RULES, until - SECOND) == []
        changes = evaluate(state, RULES, until)
        assert [c.change for c in changes] == ["reopened"]
        assert (alert.status, alert.snoozed_until) == ("open", None)
        assert alert.raised_at == until.isoformat()

    def test_a_reopened_alert_escalates_on_a_fresh_clock(self):
        state, alert = safety_state()
        until = T0 + timedelta(days=3)
        apply_action(state, act(alert.alert_id, "snooze", T0 + timedelta(minutes=10), until=until))
        evaluate(state, RULES, until)
        assert evaluate(state, RULES, until + HOUR - SECOND) == []
        assert [c.change for c in evaluate(state, RULES, until + HOUR)] == ["escalated"]

    def test_a_snooze_that_has_already_ended_reopens_at_the_next_evaluation(self):
        state, alert = safety_state()
        apply_action(
            state,
            act(
                alert.alert_id,
                "snooze",
                T0 + timedelta(minutes=10),
                until=T0 + timedelta(minutes=20),
            ),
        )
        changes = evaluate(state, RULES, T0 + timedelta(days=2))
        assert [c.change for c in changes] == ["reopened"]
        assert alert.raised_at == (T0 + timedelta(days=2)).isoformat()


# --- alert identity, idempotence, seq ---------------------------------------------------------


class TestAlertIdentity:
    def _busy(self, patient: str = PATIENT) -> JourneyState:
        state = new_state(patient)
        refer(state, "r1", ("submitted", at(2026, 1, 2)), ("rejected", T0), category=TT)
        refer(state, "r2", ("submitted", at(2026, 2, 2)), category=TT)
        refer(
            state, "r3", ("submitted", at(2026, 2, 9)), ("returned", at(2026, 2, 10)), category=MSK
        )
        refer(
            state,
            "r4",
            ("submitted", at(2026, 2, 16)),
            ("returned", at(2026, 2, 17)),
            category=PAIN,
        )
        apply_assessment(state, assess("phq-1", at(2026, 2, 3), item9=1))
        return state

    def test_alert_ids_are_the_patient_and_the_condition(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        alert = alert_for(state, "stalled.not_triaged")
        assert alert.key == f"stalled.not_triaged:r1:{T0.isoformat()}"
        assert alert.alert_id == f"{PATIENT}:{alert.key}"

    def test_the_same_journey_gives_the_same_alert_ids(self):
        a, b = self._busy(), self._busy()  # fresh event ids each time
        ids_a = [c.alert.alert_id for c in evaluate(a, RULES, at(2026, 3, 1))]
        ids_b = [c.alert.alert_id for c in evaluate(b, RULES, at(2026, 3, 1))]
        assert ids_a == ids_b and len(ids_a) >= 4
        assert all(i.startswith(f"{PATIENT}:") for i in ids_a)
        other = [c.alert.alert_id for c in evaluate(self._busy("pt_other"), RULES, at(2026, 3, 1))]
        assert other == [i.replace(PATIENT, "pt_other", 1) for i in ids_a]

    def test_the_same_condition_never_raises_twice(self):
        state = self._busy()
        keys: list[str] = []
        now = at(2026, 2, 2)
        while now < at(2026, 9, 1):
            keys += [a.key for a in raised(evaluate(state, RULES, now))]
            now += timedelta(hours=7)
        assert len(keys) == len(set(keys)), keys
        assert {"looping.re_referral:r2", "safety.phq9_item9:phq-1"} <= set(keys)
        assert any(k.startswith("looping.returned_repeatedly:") for k in keys)
        assert any(k.startswith("stalled.not_triaged:r2:") for k in keys)
        assert any(k.startswith("stalled.rtt_breach:r2:") for k in keys)

    def test_a_resolved_condition_is_not_raised_again(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "resolve", T0 + timedelta(minutes=5)))
        assert evaluate(state, RULES, T0 + timedelta(days=1)) == []
        assert len(state.alerts) == 1

    def test_every_change_bumps_the_alert_seq(self):
        state, alert = safety_state()
        log = [("raised", alert.seq)]

        def record(changes: list[AlertChange]) -> None:
            log.extend((c.change, c.alert.seq) for c in changes)

        record(evaluate(state, RULES, T0 + HOUR))
        record(apply_action(state, act(alert.alert_id, "acknowledge", T0 + 2 * HOUR)))
        record(
            apply_action(state, act(alert.alert_id, "assign", T0 + 3 * HOUR, assignee="coord-2"))
        )
        record(
            apply_action(
                state, act(alert.alert_id, "snooze", T0 + 4 * HOUR, until=T0 + timedelta(days=1))
            )
        )
        record(evaluate(state, RULES, T0 + timedelta(days=1)))
        record(evaluate(state, RULES, T0 + timedelta(days=1) + HOUR))
        record(apply_action(state, act(alert.alert_id, "resolve", T0 + timedelta(days=2))))
        assert log == [
            ("raised", 1),
            ("escalated", 2),
            ("acknowledged", 3),
            ("assigned", 4),
            ("snoozed", 5),
            ("reopened", 6),
            ("escalated", 7),
            ("resolved", 8),
        ]

    def test_a_stall_resolving_itself_bumps_the_seq(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        alert = alert_for(state, "stalled.not_triaged")
        apply_referral_event(state, ev("r1", "accepted", at(2026, 1, 19, 10)))
        changes = evaluate(state, RULES, at(2026, 1, 19, 11))
        assert [(c.change, c.alert.seq) for c in changes] == [("resolved", 2)]
        assert alert is changes[0].alert

    def test_every_change_names_the_patient_and_the_time(self):
        state = self._busy()
        when = at(2026, 3, 1)
        changes = evaluate(state, RULES, when)
        assert changes
        assert {(c.patient_id, c.at) for c in changes} == {(PATIENT, when.isoformat())}


# --- explanations and evidence ----------------------------------------------------------------


class TestExplanations:
    def test_not_triaged_says_where_and_when_in_plain_english(self):
        state = journey(ev("r1", "submitted", T0, category=TT))
        alert = raised(evaluate(state, RULES, at(2026, 1, 19)))[0]
        assert alert.explanation == (
            "Referred to talking therapies on 5 January 2026 and not triaged by 19 January 2026."
        )

    def test_not_booked_mentions_the_service_and_both_dates(self):
        state = journey(ev("r1", "accepted", T0, category=TT))
        alert = raised(evaluate(state, RULES, at(2026, 2, 2)))[0]
        assert alert.explanation == (
            "Accepted by talking therapies on 5 January 2026 but no "
            "appointment booked by 2 February 2026."
        )

    def test_no_outcome_mentions_the_appointment_date(self):
        state = journey(
            ev(
                "r1",
                "booked",
                at(2026, 12, 14, 10),
                category=MSK,
                appointment_at=at(2026, 12, 24, 10),
            )
        )
        alert = raised(evaluate(state, RULES, at(2026, 12, 30, 10)))[0]
        assert alert.explanation == (
            "Appointment with MSK physiotherapy on 24 December 2026 has no outcome recorded."
        )

    def test_no_outcome_without_an_appointment_date_reads_cleanly(self):
        state = journey(ev("r1", "booked", at(2026, 1, 9), category=MSK))
        alert = raised(evaluate(state, RULES, at(2026, 1, 13)))[0]
        assert alert.explanation == "Appointment with MSK physiotherapy has no outcome recorded."

    def test_no_activity_names_the_state_in_words(self):
        state = journey(ev("r1", "did_not_attend", T0, category="peer_support"))
        alert = raised(evaluate(state, RULES, at(2026, 2, 16)))[0]
        assert alert.explanation == (
            "Referral to peer support has had no activity since "
            "5 January 2026 (it is did not attend)."
        )

    def test_rtt_mentions_the_referral_date_and_the_standard(self):
        state = journey(
            ev("r1", "submitted", T0, category=PAIN),
            ev("r1", "on_hold", at(2026, 4, 20), category=PAIN),
        )
        alert = raised(evaluate(state, RULES, at(2026, 5, 11)), "stalled.rtt_breach")[0]
        assert alert.explanation.startswith(
            "Referred to the pain management programme on 5 January 2026;"
        )
        assert "18 weeks" in alert.explanation

    def test_an_unknown_category_is_spelled_out_in_words(self):
        state = journey(ev("r1", "submitted", T0, category="weight_management"))
        alert = raised(evaluate(state, RULES, at(2026, 1, 19)))[0]
        assert "weight management" in alert.explanation

    def test_every_explanation_is_a_plain_sentence(self):
        state = TestAlertIdentity()._busy()
        refer(state, "r5", ("on_hold", T0), category="crisis")
        apply_assessment(state, assess("gad-1", T0, instrument="GAD-7", band="severe", item9=None))
        alerts: list[Alert] = []
        for month in range(1, 9):
            alerts += raised(evaluate(state, RULES, at(2026, month, 28)))
        assert len({a.rule for a in alerts}) >= 7
        for a in alerts:
            text = a.explanation
            assert "_" not in text and "  " not in text, text
            assert a.rule not in text and "stalled." not in text, text
            assert (text[0].isupper() or text[0].isdigit()) and text.endswith("."), text
            assert re.search(
                r"\b\d{1,2} (January|February|March|April|May|June|July|August|"
                r"September|October|November|December) 2026\b",
                text,
            ) or a.rule in ("looping.returned_repeatedly", "looping.frequent_contact"), text

    def test_stall_evidence_names_the_referral_and_the_deadline(self):
        state = journey(ev("r1", "submitted", T0))
        alert = raised(evaluate(state, RULES, at(2026, 1, 19)))[0]
        assert [(e.referral_id, e.at, e.state) for e in alert.evidence] == [
            ("r1", T0.isoformat(), "submitted")
        ]
        assert at(2026, 1, 19).isoformat() in alert.evidence[0].detail

    def test_loop_evidence_lists_the_referral_ids(self):
        alerts = raised(evaluate(TestAlertIdentity()._busy(), RULES, at(2026, 2, 18)))
        by_rule = {a.rule: [e.referral_id for e in a.evidence] for a in alerts}
        assert by_rule["looping.re_referral"] == ["r1", "r2"]
        assert by_rule["looping.returned_repeatedly"] == ["r3", "r4"]


# --- apply_action -----------------------------------------------------------------------------


class TestApplyAction:
    def test_acknowledge_sets_the_status_time_and_assignee(self):
        state, alert = safety_state()
        when = T0 + timedelta(minutes=5)
        changes = apply_action(state, act(alert.alert_id, "acknowledge", when, actor="coord-7"))
        assert [(c.change, c.patient_id, c.at) for c in changes] == [
            ("acknowledged", PATIENT, when.isoformat())
        ]
        assert (alert.status, alert.acknowledged_at, alert.assignee) == (
            "acknowledged",
            when.isoformat(),
            "coord-7",
        )

    def test_acknowledge_keeps_an_existing_assignee(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "assign", T0 + SECOND, assignee="coord-2"))
        apply_action(state, act(alert.alert_id, "acknowledge", T0 + 2 * SECOND, actor="coord-9"))
        assert (alert.status, alert.assignee) == ("acknowledged", "coord-2")

    def test_acknowledging_twice_changes_nothing_the_second_time(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "acknowledge", T0 + SECOND))
        seq = alert.seq
        assert apply_action(state, act(alert.alert_id, "acknowledge", T0 + HOUR)) == []
        assert (alert.seq, alert.acknowledged_at) == (seq, (T0 + SECOND).isoformat())

    def test_a_snoozed_alert_can_be_acknowledged(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "snooze", T0 + SECOND, until=T0 + 5 * HOUR))
        assert [
            c.change for c in apply_action(state, act(alert.alert_id, "acknowledge", T0 + HOUR))
        ] == ["acknowledged"]
        assert alert.status == "acknowledged"

    def test_assign_sets_the_assignee_and_keeps_the_status(self):
        state, alert = safety_state()
        changes = apply_action(
            state, act(alert.alert_id, "assign", T0 + SECOND, assignee="coord-3")
        )
        assert [c.change for c in changes] == ["assigned"]
        assert (alert.status, alert.assignee) == ("open", "coord-3")

    def test_assign_without_an_assignee_is_ignored(self):
        state, alert = safety_state()
        assert apply_action(state, act(alert.alert_id, "assign", T0 + SECOND)) == []
        assert (alert.assignee, alert.seq) == (None, 1)

    def test_resolve_records_the_reason(self):
        state, alert = safety_state()
        when = T0 + HOUR - SECOND
        changes = apply_action(
            state,
            act(
                alert.alert_id, "resolve", when, reason="spoke to the person; safety plan in place"
            ),
        )
        assert [c.change for c in changes] == ["resolved"]
        assert (alert.status, alert.resolved_at, alert.resolution) == (
            "resolved",
            when.isoformat(),
            "spoke to the person; safety plan in place",
        )

    def test_resolve_without_a_reason_names_who_resolved_it(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "resolve", T0 + SECOND, actor="coord-4"))
        assert alert.resolution == "resolved by coord-4"

    def test_snooze_sets_the_status_and_until(self):
        state, alert = safety_state()
        until = T0 + timedelta(days=2)
        changes = apply_action(state, act(alert.alert_id, "snooze", T0 + SECOND, until=until))
        assert [c.change for c in changes] == ["snoozed"]
        assert (alert.status, alert.snoozed_until) == ("snoozed", until.isoformat())

    def test_snooze_without_until_is_ignored(self):
        state, alert = safety_state()
        assert apply_action(state, act(alert.alert_id, "snooze", T0 + SECOND)) == []
        assert alert.status == "open"

    def test_an_unknown_alert_id_is_ignored(self):
        state, alert = safety_state()
        assert apply_action(state, act(f"{PATIENT}:nothing:here", "resolve", T0 + SECOND)) == []
        assert alert.status == "open" and alert.seq == 1

    @pytest.mark.parametrize("action", ["acknowledge", "assign", "resolve", "snooze"])
    def test_actions_on_a_resolved_alert_are_ignored(self, action):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "resolve", T0 + SECOND, reason="done"))
        changes = apply_action(
            state,
            act(alert.alert_id, action, T0 + HOUR, assignee="c-5", until=T0 + timedelta(days=1)),
        )
        assert changes == []
        assert (alert.status, alert.resolution, alert.assignee, alert.seq) == (
            "resolved",
            "done",
            None,
            2,
        )

    def test_a_duplicate_action_event_is_ignored(self):
        state, alert = safety_state()
        first = act(alert.alert_id, "assign", T0 + SECOND, assignee="coord-a", event_id="a-1")
        assert len(apply_action(state, first)) == 1
        again = act(alert.alert_id, "assign", T0 + HOUR, assignee="coord-b", event_id="a-1")
        assert apply_action(state, again) == []
        assert (alert.assignee, alert.seq) == ("coord-a", 2)
        assert state.duplicates_ignored == 1

    @pytest.mark.parametrize("action", ["delete", "escalate", "ACKNOWLEDGE", ""])
    def test_an_invalid_action_is_ignored(self, action):
        state, alert = safety_state()
        assert (
            apply_action(
                state, act(alert.alert_id, action, T0 + SECOND, assignee="x", until=T0 + HOUR)
            )
            == []
        )
        assert (alert.status, alert.assignee, alert.seq) == ("open", None, 1)


# --- next_wake --------------------------------------------------------------------------------


class TestNextWake:
    def test_nothing_pending_is_none(self):
        assert next_wake(new_state(), RULES, T0) is None

    def test_closed_referrals_leave_nothing_pending(self):
        state = journey(
            ev("r1", "submitted", T0), ev("r1", "discharged", T0 + HOUR), ev("r2", "draft", T0)
        )
        assert next_wake(state, RULES, T0 + 2 * HOUR) is None

    def test_the_earliest_stall_deadline(self):
        state = journey(
            ev("r1", "submitted", T0), ev("r2", "accepted", at(2026, 1, 6), category="crisis")
        )
        # r1 triage Mon 19 Jan; r2 crisis booking Tue 13 Jan
        assert next_wake(state, RULES, T0 + HOUR) == at(2026, 1, 13)

    def test_a_stall_already_alerted_is_not_a_wake(self):
        state = journey(ev("r1", "submitted", T0))
        evaluate(state, RULES, at(2026, 1, 19))
        # the not_triaged alert escalates on Tue 20 Jan; the rtt deadline is Mon 11 May
        assert next_wake(state, RULES, at(2026, 1, 19)) == at(2026, 1, 20)
        apply_action(state, act(state.alerts[0].alert_id, "acknowledge", at(2026, 1, 19, 10)))
        assert next_wake(state, RULES, at(2026, 1, 19, 10)) == at(2026, 5, 11)

    def test_the_escalation_of_an_open_alert(self):
        state, _ = safety_state()
        assert next_wake(state, RULES, T0) == T0 + HOUR

    def test_escalated_and_acknowledged_alerts_are_not_wakes(self):
        state, alert = safety_state()
        evaluate(state, RULES, T0 + HOUR)
        assert next_wake(state, RULES, T0 + HOUR) is None
        apply_action(state, act(alert.alert_id, "acknowledge", T0 + 2 * HOUR))
        assert next_wake(state, RULES, T0 + 2 * HOUR) is None

    def test_the_end_of_a_snooze(self):
        state, alert = safety_state()
        until = T0 + timedelta(days=2, hours=3)
        apply_action(state, act(alert.alert_id, "snooze", T0 + SECOND, until=until))
        assert next_wake(state, RULES, T0 + SECOND) == until

    def test_the_earliest_of_stall_escalation_and_snooze(self):
        state, alert = safety_state()
        apply_action(state, act(alert.alert_id, "snooze", T0 + SECOND, until=at(2026, 1, 15, 12)))
        apply_referral_event(state, ev("r1", "submitted", T0))
        assert next_wake(state, RULES, T0 + HOUR) == at(2026, 1, 15, 12)
        apply_action(state, act(alert.alert_id, "snooze", T0 + 2 * HOUR, until=at(2026, 1, 25)))
        assert next_wake(state, RULES, T0 + 2 * HOUR) == at(2026, 1, 19)

    def test_never_a_time_at_or_before_now(self):
        state = journey(ev("r1", "submitted", T0))
        # the triage deadline is now, but not yet evaluated: the next is the rtt deadline
        assert next_wake(state, RULES, at(2026, 1, 19)) == at(2026, 5, 11)
        assert next_wake(state, RULES, at(2026, 5, 11)) is None
        overdue, alert = safety_state()
        apply_action(overdue, act(alert.alert_id, "snooze", T0 + SECOND, until=T0 + HOUR))
        assert next_wake(overdue, RULES, T0 + HOUR) is None
        assert next_wake(overdue, RULES, T0 + 2 * HOUR) is None

    def test_an_overdue_escalation_is_left_to_evaluate(self):
        state, _ = safety_state()
        assert next_wake(state, RULES, T0 + 5 * HOUR) is None

    def test_each_wake_has_something_to_say_until_nothing_is_pending(self):
        state = journey(ev("r1", "submitted", T0))
        now = T0 + HOUR
        assert evaluate(state, RULES, now) == []
        seen = []
        while (wake := next_wake(state, RULES, now)) is not None:
            assert wake > now
            changes = evaluate(state, RULES, wake)
            seen.append((wake, [(c.change, c.alert.rule) for c in changes]))
            now = wake
        assert seen == [
            (at(2026, 1, 19), [("raised", "stalled.not_triaged")]),
            (at(2026, 1, 20), [("escalated", "stalled.not_triaged")]),
            (at(2026, 5, 11), [("raised", "stalled.rtt_breach")]),
            (at(2026, 5, 12), [("escalated", "stalled.rtt_breach")]),
        ]
