"""The rules of an imported history (services/referrals/history.py) and of a Task written back
(services/referrals/fhir_task.py): pure, no I/O, many cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from services.referrals.domain import RULES, Action, ReferralState
from services.referrals.fhir import FhirInvalid
from services.referrals.fhir_task import task_referral_id, task_update
from services.referrals.history import Step, action_to, check_times, plan_history
from shared.errors import Conflict, ValidationFailed

S = ReferralState
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EARLIEST = date(2000, 1, 1)
BASE = "https://waymark.nhs.example/fhir"


def at(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def steps(*spec: tuple[str, float] | tuple[str, float, str | None]) -> list[Step]:
    out = []
    for item in spec:
        state, days = item[0], item[1]
        reason = item[2] if len(item) > 2 else None  # type: ignore[misc]
        appointment = at(days - 20) if state == "booked" else None
        out.append(Step(S(state), at(days), reason, appointment))
    return out


def plan(sent: list[Step], stored: list[Step] | None = None, **kw: Any) -> Any:
    stored = stored or []
    current = kw.pop("current", stored[-1].state if stored else None)
    return plan_history(
        sent,
        stored=stored,
        current=current,
        held_from=kw.pop("held_from", None),
        last_at=stored[-1].at if stored else None,
        now=NOW,
        earliest=EARLIEST,
    )


class TestActionTo:
    @pytest.mark.parametrize(
        "action", [a for a in Action if a not in (Action.SUBMIT, Action.RESUME)]
    )
    def test_every_rule_is_found_from_every_state_it_leaves(self, action: Action) -> None:
        rule = RULES[action]
        for state in rule.from_states:
            assert rule.to_state is not None
            assert action_to(state, rule.to_state, None) is action

    @pytest.mark.parametrize("held", [S.SUBMITTED, S.ACCEPTED, S.BOOKED])
    def test_a_resume_goes_back_to_the_state_before_the_hold(self, held: ReferralState) -> None:
        assert action_to(S.ON_HOLD, held, held) is Action.RESUME

    @pytest.mark.parametrize(
        "state, target",
        [
            (S.SUBMITTED, S.BOOKED),
            (S.SUBMITTED, S.DISCHARGED),
            (S.ACCEPTED, S.ATTENDED),
            (S.DISCHARGED, S.ACCEPTED),
            (S.CANCELLED, S.SUBMITTED),
            (S.REJECTED, S.ACCEPTED),
            (S.ON_HOLD, S.BOOKED),
            (S.SUBMITTED, S.DRAFT),
            (S.SUBMITTED, S.SUBMITTED),
        ],
    )
    def test_a_target_no_rule_reaches_is_refused_naming_what_may(
        self, state: ReferralState, target: ReferralState
    ) -> None:
        held = S.SUBMITTED if state is S.ON_HOLD else None
        with pytest.raises(ValidationFailed) as e:
            action_to(state, target, held)
        assert state.value in e.value.message and target.value in e.value.message

    def test_a_closed_referral_can_become_nothing(self) -> None:
        with pytest.raises(ValidationFailed, match="nothing"):
            action_to(S.DISCHARGED, S.BOOKED, None)


class TestTimes:
    def test_equal_times_are_in_order(self) -> None:
        check_times(steps(("submitted", 5), ("accepted", 5)), now=NOW, earliest=EARLIEST)

    @pytest.mark.parametrize(
        "sent, word",
        [
            ([Step(S.SUBMITTED, NOW + timedelta(seconds=1))], "future"),
            ([Step(S.SUBMITTED, datetime(1999, 12, 31, 23, tzinfo=UTC))], "2000-01-01"),
            (steps(("submitted", 5), ("accepted", 6)), "history[1]"),
            ([Step(S.ACCEPTED, at(3), appointment_at=at(1))], "only a booked step"),
            ([Step(S.BOOKED, at(3), appointment_at=datetime(2101, 1, 1, tzinfo=UTC))], "2100"),
        ],
        ids=["future", "before-2000", "out-of-order", "appointment-not-booked", "appointment-2101"],
    )
    def test_refused(self, sent: list[Step], word: str) -> None:
        with pytest.raises(ValidationFailed, match=word.replace("[", r"\[").replace("]", r"\]")):
            check_times(sent, now=NOW, earliest=EARLIEST)

    def test_the_same_instant_in_another_offset_is_not_earlier(self) -> None:
        plus_two = timezone(timedelta(hours=2))
        a = Step(S.SUBMITTED, at(2))
        b = Step(S.ACCEPTED, at(2).astimezone(plus_two))
        check_times([a, b], now=NOW, earliest=EARLIEST)
        assert a.at == b.at

    def test_an_appended_step_before_the_last_stored_is_refused_with_its_index(self) -> None:
        with pytest.raises(ValidationFailed, match=r"history\[3\]"):
            check_times(steps(("accepted", 10)), now=NOW, earliest=EARLIEST, after=at(5), offset=3)


class TestPlan:
    def test_a_new_history_is_planned_whole(self) -> None:
        sent = steps(("submitted", 30), ("accepted", 20), ("booked", 15), ("attended", 5))
        p = plan(sent)
        assert p.stored == 0 and len(p.new_steps) == 4
        assert p.new_steps[0].transition is None
        assert [ps.transition.action for ps in p.new_steps[1:]] == [  # type: ignore[union-attr]
            Action.ACCEPT,
            Action.BOOK,
            Action.ATTEND,
        ]

    def test_the_same_history_plans_nothing(self) -> None:
        sent = steps(("submitted", 30), ("accepted", 20))
        assert plan(sent, stored=list(sent)).new_steps == []

    def test_a_shorter_history_plans_nothing(self) -> None:
        stored = steps(("submitted", 30), ("accepted", 20))
        assert plan(stored[:1], stored=stored).new_steps == []

    def test_a_longer_history_plans_its_new_steps_from_the_stored_state(self) -> None:
        stored = steps(("submitted", 30), ("accepted", 20))
        sent = stored + steps(("booked", 15))
        p = plan(sent, stored=stored)
        assert [ps.index for ps in p.new_steps] == [2]
        assert p.new_steps[0].transition.action is Action.BOOK  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "change",
        [
            {"state": S.REJECTED, "reason": "patient-declined"},
            {"at": at(21)},
            {"reason": "patient-request"},
        ],
        ids=["state", "time", "reason"],
    )
    def test_a_differing_step_is_a_conflict_naming_it(self, change: dict[str, Any]) -> None:
        stored = steps(("submitted", 30), ("accepted", 20))
        changed = Step(**{**stored[1].__dict__, **change})
        with pytest.raises(Conflict, match=r"history\[1\] contradicts") as e:
            plan([stored[0], changed], stored=stored)
        assert e.value.extra["step"] == 1

    def test_a_differing_appointment_is_a_conflict(self) -> None:
        stored = steps(("submitted", 30), ("accepted", 20), ("booked", 15))
        moved = Step(S.BOOKED, stored[2].at, None, at(1))
        with pytest.raises(Conflict, match=r"history\[2\]"):
            plan([*stored[:2], moved], stored=stored)

    def test_new_steps_after_a_change_made_in_waymark_are_a_conflict(self) -> None:
        stored = steps(("submitted", 30))
        with pytest.raises(Conflict, match="moved on"):
            plan(stored + steps(("accepted", 20)), stored=stored, current=S.ACCEPTED)

    @pytest.mark.parametrize(
        "sent, word",
        [
            (steps(("accepted", 3)), "starts with the referral submitted"),
            ([Step(S.SUBMITTED, at(3), "patient-request")], "takes no reason"),
            (steps(("submitted", 3), ("rejected", 2)), "needs a reason_code"),
            (steps(("submitted", 3), ("rejected", 2, "advice-and-guidance-given")), "not a reason"),
            (steps(("submitted", 3), ("accepted", 2, "patient-request")), "takes no reason"),
            (
                [Step(S.SUBMITTED, at(3)), Step(S.ACCEPTED, at(2)), Step(S.BOOKED, at(1))],
                "appointment",
            ),
            (steps(("submitted", 3), ("attended", 2)), "cannot become attended"),
            (
                steps(("submitted", 3), ("cancelled", 2, "patient-request"), ("accepted", 1)),
                "closed",
            ),
        ],
        ids=[
            "first-not-submitted",
            "submit-with-reason",
            "reject-without-reason",
            "reject-with-return-reason",
            "accept-with-reason",
            "booked-without-appointment",
            "skip-booking",
            "after-closure",
        ],
    )
    def test_what_the_state_machine_refuses_is_invalid_naming_the_step(
        self, sent: list[Step], word: str
    ) -> None:
        with pytest.raises(ValidationFailed) as e:
            plan(sent)
        assert "history[" in e.value.message and word in e.value.message

    def test_a_hold_and_resume_round_trip(self) -> None:
        sent = steps(
            ("submitted", 9),
            ("accepted", 8),
            ("on_hold", 7, "patient-unwell"),
            ("accepted", 6),
            ("booked", 5),
            ("on_hold", 4, "patient-request"),
            ("booked", 3),
        )
        actions = [ps.transition.action for ps in plan(sent).new_steps[1:]]  # type: ignore[union-attr]
        assert actions == [
            Action.ACCEPT,
            Action.HOLD,
            Action.RESUME,
            Action.BOOK,
            Action.HOLD,
            Action.RESUME,
        ]


def task(status: str, **over: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": status, "intent": "order", **over}


def coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{BASE}/CodeSystem/{system}", "code": code}]}


class TestTaskUpdate:
    @pytest.mark.parametrize(
        "sent, state, target",
        [
            (task("accepted"), S.SUBMITTED, S.ACCEPTED),
            (
                task("rejected", statusReason=coded("transition-reason", "patient-declined")),
                S.SUBMITTED,
                S.REJECTED,
            ),
            # a reason both lists hold is a rejection unless businessStatus says returned
            (
                task(
                    "rejected", statusReason=coded("transition-reason", "insufficient-information")
                ),
                S.SUBMITTED,
                S.REJECTED,
            ),
            (
                task("rejected", statusReason=coded("transition-reason", "refer-elsewhere")),
                S.SUBMITTED,
                S.RETURNED,
            ),
            (
                task("rejected", businessStatus=coded("referral-state", "returned")),
                S.SUBMITTED,
                S.RETURNED,
            ),
            (task("in-progress"), S.ACCEPTED, S.BOOKED),
            (
                task("in-progress", businessStatus=coded("referral-state", "attended")),
                S.BOOKED,
                S.ATTENDED,
            ),
            (
                task("in-progress", businessStatus=coded("referral-state", "did_not_attend")),
                S.BOOKED,
                S.DID_NOT_ATTEND,
            ),
            (task("completed"), S.ATTENDED, S.DISCHARGED),
            (task("cancelled"), S.ACCEPTED, S.CANCELLED),
            (task("on-hold"), S.BOOKED, S.ON_HOLD),
            (task("requested"), S.SUBMITTED, S.SUBMITTED),
        ],
    )
    def test_status_maps_onto_a_state(
        self, sent: dict[str, Any], state: ReferralState, target: ReferralState
    ) -> None:
        assert task_update(sent, referral_id="r1", state=state, held_from=None).target is target

    def test_requested_on_hold_resumes_to_the_state_before(self) -> None:
        u = task_update(task("requested"), referral_id="r1", state=S.ON_HOLD, held_from=S.BOOKED)
        assert u.target is S.BOOKED

    def test_a_booking_carries_its_appointment_and_notes(self) -> None:
        sent = task(
            "in-progress",
            restriction={"period": {"start": "2026-12-10T09:30:00+00:00"}},
            note=[{"text": "Room 4"}, {"text": "bring shoes"}],
        )
        u = task_update(sent, referral_id="r1", state=S.ACCEPTED, held_from=None)
        assert u.appointment_at == datetime(2026, 12, 10, 9, 30, tzinfo=UTC)
        assert u.note == "Room 4\nbring shoes"

    def test_an_appointment_on_another_status_is_dropped(self) -> None:
        sent = task("accepted", restriction={"period": {"start": "2026-12-10T09:30:00+00:00"}})
        assert (
            task_update(sent, referral_id="r1", state=S.SUBMITTED, held_from=None).appointment_at
            is None
        )

    @pytest.mark.parametrize(
        "sent, word",
        [
            ({"resourceType": "ServiceRequest"}, "Task"),
            ([], "Task"),
            (task("banana"), "status"),
            (task("ready"), "ready"),
            (task("accepted", id="r2"), "Task.id"),
            (task("accepted", basedOn=[{"reference": "ServiceRequest/r2"}]), "another"),
            (task("accepted", businessStatus=coded("referral-state", "nope")), "businessStatus"),
            (
                task("accepted", businessStatus=coded("referral-state", "booked")),
                "does not go with",
            ),
            (task("accepted", statusReason={"text": "busy"}), "statusReason"),
            (
                task("accepted", statusReason={"coding": [{"system": "x:y", "code": "a"}]}),
                "statusReason",
            ),
            (
                task(
                    "accepted",
                    statusReason={
                        "coding": [
                            {"system": f"{BASE}/CodeSystem/transition-reason", "code": "a"},
                            {"system": f"{BASE}/CodeSystem/transition-reason", "code": "b"},
                        ]
                    },
                ),
                "one code",
            ),
            (task("in-progress", restriction={"period": {"start": "2026-12-10"}}), "date and time"),
        ],
        ids=[
            "not-a-task",
            "array",
            "status-unknown",
            "status-ready",
            "another-id",
            "based-on-another",
            "business-unknown",
            "business-against-status",
            "reason-text",
            "reason-other-system",
            "two-reasons",
            "appointment-a-date",
        ],
    )
    def test_refused(self, sent: Any, word: str) -> None:
        with pytest.raises(FhirInvalid) as e:
            task_update(sent, referral_id="r1", state=S.SUBMITTED, held_from=None)
        assert word in e.value.message

    @pytest.mark.parametrize(
        "sent, expected",
        [
            (task("accepted", basedOn=[{"reference": "ServiceRequest/abc"}]), "abc"),
            (task("accepted", focus={"reference": "ServiceRequest/abc"}), "abc"),
            (
                task(
                    "accepted",
                    basedOn=[{"reference": "ServiceRequest/abc"}],
                    focus={"reference": "ServiceRequest/abc"},
                ),
                "abc",
            ),
        ],
    )
    def test_a_posted_task_names_its_referral(self, sent: dict[str, Any], expected: str) -> None:
        assert task_referral_id(sent) == expected

    @pytest.mark.parametrize(
        "sent",
        [
            task("accepted"),
            task("accepted", basedOn=[{"reference": "Patient/abc"}]),
            task(
                "accepted",
                basedOn=[{"reference": "ServiceRequest/a"}],
                focus={"reference": "ServiceRequest/b"},
            ),
        ],
        ids=["none", "not-a-service-request", "two"],
    )
    def test_a_posted_task_without_one_referral_is_refused(self, sent: dict[str, Any]) -> None:
        with pytest.raises(FhirInvalid, match="basedOn"):
            task_referral_id(sent)
