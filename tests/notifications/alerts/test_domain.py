"""The alert inbox rules (pure): which action is allowed in which status — exactly what the
journey's `apply_action` applies — what each action does to the row, who may see and act, and
the inbox's filters, sort and paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.alerts import domain as alerts
from services.notifications.alerts.domain import (
    Action,
    AlertContent,
    AlertSnapshot,
    Kind,
    Reconciliation,
    Severity,
    Status,
    reconcile,
)
from shared.auth import Principal, Role
from shared.errors import Conflict, Forbidden, ValidationFailed
from workflows.journeys.rules import apply_action
from workflows.journeys.state import Alert, AlertAction, JourneyState

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ICS = "ICS-1"


def snap(status: str, assignee: str | None = None, **kw: object) -> AlertSnapshot:
    return AlertSnapshot(
        status=status,
        assignee=assignee,
        acknowledged_at=kw.get("acknowledged_at"),  # type: ignore[arg-type]
        snoozed_until=kw.get("snoozed_until"),  # type: ignore[arg-type]
        resolved_at=None,
        resolution=None,
    )


def who(*roles: Role, ics: str = ICS, user: str = "coord-1") -> Principal:
    return Principal(user=user, roles=frozenset(roles), org="ICB-1", ics=ics)


class TestAllowedActions:
    @pytest.mark.parametrize(
        ("status", "allowed"),
        [
            ("open", ["acknowledge", "assign", "snooze", "resolve"]),
            ("escalated", ["acknowledge", "assign", "snooze", "resolve"]),
            ("snoozed", ["acknowledge", "assign", "snooze", "resolve"]),
            ("acknowledged", ["assign", "snooze", "resolve"]),
            # the cause has gone, but a coordinator may still take it up or close it
            ("progressing", ["acknowledge", "assign", "snooze", "resolve"]),
            ("resolved", []),
            ("no-such-status", []),
        ],
    )
    def test_each_status_allows_its_actions(self, status, allowed):
        assert [a.value for a in alerts.allowed_actions(status)] == allowed

    @pytest.mark.parametrize("status", ["open", "escalated", "acknowledged", "progressing"])
    def test_an_urgent_alert_is_never_snoozed(self, status):
        """A snooze would keep a PHQ-9 item 9 alert from the duty rota (HAZ-047)."""
        assert "snooze" not in [a.value for a in alerts.allowed_actions(status, "urgent")]
        assert "snooze" in [a.value for a in alerts.allowed_actions(status, "high")]
        urgent = AlertSnapshot(
            status=status,
            assignee="c",
            acknowledged_at=None,
            snoozed_until=None,
            resolved_at=None,
            resolution=None,
            severity="urgent",
        )
        with pytest.raises(Conflict, match="an urgent alert cannot be snoozed") as err:
            alerts.plan_action(
                urgent, Action.SNOOZE, actor="c", now=NOW, until=NOW + timedelta(hours=2)
            )
        assert "snooze" not in err.value.extra["allowed_actions"]
        assert (
            alerts.plan_action(
                urgent, Action.RESOLVE, actor="c", now=NOW, resolution="contacted-person"
            ).status
            == "resolved"
        )

    @pytest.mark.parametrize("action", list(Action))
    def test_a_resolved_alert_takes_no_action_and_the_409_says_so(self, action):
        with pytest.raises(Conflict) as err:
            alerts.check_action("resolved", action)
        assert err.value.extra["allowed_actions"] == []
        assert "takes no actions" in err.value.message

    def test_acknowledging_twice_is_a_409_naming_what_is_allowed(self):
        with pytest.raises(Conflict) as err:
            alerts.check_action("acknowledged", Action.ACKNOWLEDGE)
        assert err.value.extra["allowed_actions"] == ["assign", "snooze", "resolve"]
        assert "assign, snooze, resolve" in err.value.message
        assert err.value.extra["status_now"] == "acknowledged"

    @pytest.mark.parametrize("status", [s.value for s in Status])
    @pytest.mark.parametrize("action", list(Action))
    def test_the_inbox_allows_exactly_what_the_journey_applies(self, status, action):
        """The journey's own rule decides; the inbox must never accept an action the journey
        will ignore, nor refuse one it would apply."""
        alert = Alert(
            alert_id="pt_x:k",
            key="k",
            kind="safety",
            rule="safety.phq9_item9",
            severity="urgent",
            explanation="",
            evidence=[],
            status=status,
            raised_at=NOW.isoformat(),
        )
        state = JourneyState(patient_id="pt_x", alerts=[alert])
        changes = apply_action(
            state,
            AlertAction(
                event_id="e1",
                alert_id="pt_x:k",
                action=action.value,
                actor="coord-1",
                occurred_at=NOW.isoformat(),
                assignee="coord-2",
                reason="contacted-person",
                until=(NOW + timedelta(days=1)).isoformat(),
            ),
        )
        assert (action in alerts.allowed_actions(status)) == bool(changes)
        if changes:
            # and the row the inbox writes at once is the one the journey ends with
            plan = alerts.plan_action(
                snap(status),
                action,
                actor="coord-1",
                now=NOW,
                assignee="coord-2",
                until=NOW + timedelta(days=1),
                resolution="contacted-person",
            )
            assert plan.status == changes[0].alert.status
            assert plan.assignee == changes[0].alert.assignee
            assert plan.change == changes[0].change


class TestPlanAction:
    def test_acknowledge_takes_it_and_stamps_the_time(self):
        plan = alerts.plan_action(snap("open"), Action.ACKNOWLEDGE, actor="coord-1", now=NOW)
        assert (plan.status, plan.assignee, plan.acknowledged_at, plan.change) == (
            "acknowledged",
            "coord-1",
            NOW,
            "acknowledged",
        )
        assert plan.event_assignee is None  # the journey applies "assignee or actor" itself

    def test_acknowledge_keeps_an_existing_assignee(self):
        plan = alerts.plan_action(
            snap("escalated", "coord-9"), Action.ACKNOWLEDGE, actor="coord-1", now=NOW
        )
        assert plan.assignee == "coord-9"

    def test_acknowledging_a_snoozed_alert_ends_the_snooze(self):
        plan = alerts.plan_action(
            snap("snoozed", snoozed_until=NOW + timedelta(days=2)),
            Action.ACKNOWLEDGE,
            actor="c",
            now=NOW,
        )
        assert plan.status == "acknowledged" and plan.snoozed_until is None

    def test_assign_keeps_the_status(self):
        plan = alerts.plan_action(
            snap("escalated"), Action.ASSIGN, actor="c", now=NOW, assignee="coord-2"
        )
        assert (plan.status, plan.assignee, plan.event_assignee) == (
            "escalated",
            "coord-2",
            "coord-2",
        )

    def test_assign_to_me_is_the_caller(self):
        plan = alerts.plan_action(
            snap("open"), Action.ASSIGN, actor="coord-1", now=NOW, assignee="me"
        )
        assert plan.assignee == "coord-1" and plan.event_assignee == "coord-1"

    @pytest.mark.parametrize(
        "assignee", [None, "", "two words", "x" * 101, "tab\there", "<script>"]
    )
    def test_assign_needs_a_user_id(self, assignee):
        with pytest.raises(ValidationFailed):
            alerts.plan_action(snap("open"), Action.ASSIGN, actor="c", now=NOW, assignee=assignee)

    def test_snooze_sets_until(self):
        until = NOW + timedelta(days=3)
        plan = alerts.plan_action(
            snap("acknowledged", "c"), Action.SNOOZE, actor="c", now=NOW, until=until
        )
        assert (plan.status, plan.snoozed_until, plan.event_snooze_until, plan.assignee) == (
            "snoozed",
            until,
            until,
            "c",
        )

    @pytest.mark.parametrize(
        "until",
        [
            None,
            NOW,
            NOW - timedelta(seconds=1),
            NOW + timedelta(days=30, seconds=1),
            datetime(2026, 3, 3, 10, 0),
        ],
    )  # naive: no offset
    def test_snooze_until_must_be_the_near_future(self, until):
        with pytest.raises(ValidationFailed):
            alerts.plan_action(snap("open"), Action.SNOOZE, actor="c", now=NOW, until=until)

    def test_snooze_of_exactly_thirty_days_is_allowed(self):
        until = NOW + timedelta(days=30)
        assert (
            alerts.plan_action(
                snap("open"), Action.SNOOZE, actor="c", now=NOW, until=until
            ).snoozed_until
            == until
        )

    def test_resolve_records_the_coded_reason(self):
        plan = alerts.plan_action(
            snap("acknowledged", "c"),
            Action.RESOLVE,
            actor="c",
            now=NOW,
            resolution="contacted-person",
        )
        assert (plan.status, plan.resolved_at, plan.resolution, plan.event_resolution) == (
            "resolved",
            NOW,
            "contacted-person",
            "contacted-person",
        )

    @pytest.mark.parametrize(
        "resolution", [None, "", "Contacted", "free text here", "a" * 61, "ok_underscore", "é"]
    )
    def test_resolve_needs_a_code(self, resolution):
        with pytest.raises(ValidationFailed):
            alerts.plan_action(
                snap("open"), Action.RESOLVE, actor="c", now=NOW, resolution=resolution
            )

    def test_the_status_is_checked_before_the_arguments(self):
        with pytest.raises(Conflict):
            alerts.plan_action(
                snap("resolved"), Action.RESOLVE, actor="c", now=NOW, resolution="not a code"
            )


class TestWhoMaySeeAndAct:
    @pytest.mark.parametrize("roles", [(Role.COORDINATOR,), (Role.CLINICIAN, Role.COORDINATOR)])
    def test_coordinators_and_admins_of_the_ics_read(self, roles):
        alerts.check_may_read(who(*roles), ICS)

    @pytest.mark.parametrize(
        "roles",
        [
            (Role.CLINICIAN,),
            (Role.PARTNER,),
            (Role.SERVICE_STAFF,),
            (Role.SERVICE,),
            (Role.ADMIN,),
            (Role.ICS_LEAD,),
        ],
    )
    def test_other_roles_may_not_read(self, roles):
        with pytest.raises(Forbidden):
            alerts.check_may_read(who(*roles), ICS)

    def test_a_coordinator_of_another_ics_may_not_read(self):
        with pytest.raises(Forbidden):
            alerts.check_may_read(who(Role.COORDINATOR, ics="ICS-2"), ICS)

    def test_only_coordinators_of_the_alerts_ics_act(self):
        alerts.check_may_act(who(Role.COORDINATOR), ICS)
        for p in (who(Role.ADMIN), who(Role.CLINICIAN), who(Role.COORDINATOR, ics="ICS-2")):
            with pytest.raises(Forbidden):
                alerts.check_may_act(p, ICS)


def build(**kw: object) -> alerts.AlertFilter:
    return alerts.build_filter(ics=ICS, actor="coord-1", now=NOW, **kw)  # type: ignore[arg-type]


class TestFilters:
    def test_by_default_the_action_worklist_neither_resolved_nor_progressing(self):
        f = build()
        assert f.statuses == {Status.OPEN, Status.ACKNOWLEDGED, Status.ESCALATED, Status.SNOOZED}
        assert (f.kinds, f.severities, f.assignee, f.unassigned, f.org) == (
            frozenset(),
            frozenset(),
            None,
            False,
            None,
        )

    def test_named_statuses_replace_the_default(self):
        assert build(status=["resolved"]).statuses == {Status.RESOLVED}
        assert build(status=["progressing"]).statuses == {Status.PROGRESSING}

    def test_pathway_is_a_kind(self):
        assert build(kind=["pathway"]).kinds == {Kind.PATHWAY}
        assert build(status=["open", "escalated"]).statuses == {Status.OPEN, Status.ESCALATED}

    def test_kinds_and_severities(self):
        f = build(kind=["safety", "looping"], severity=["urgent"])
        assert f.kinds == {Kind.SAFETY, Kind.LOOPING} and f.severities == {Severity.URGENT}

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("kind", ["unknown"]),
            ("severity", ["critical"]),
            ("status", ["closed"]),
            ("kind", ["Safety"]),
        ],
    )
    def test_unknown_values_are_422(self, field, value):
        with pytest.raises(ValidationFailed) as err:
            build(**{field: value})
        assert field in err.value.message

    @pytest.mark.parametrize(
        ("assignee", "expected", "unassigned"),
        [
            ("me", "coord-1", False),
            ("unassigned", None, True),
            ("coord-7", "coord-7", False),
            ("user@example.nhs.uk", "user@example.nhs.uk", False),
        ],
    )
    def test_assignee(self, assignee, expected, unassigned):
        f = build(assignee=assignee)
        assert (f.assignee, f.unassigned) == (expected, unassigned)

    @pytest.mark.parametrize("assignee", ["two words", "", "x" * 101, "a;b"])
    def test_a_bad_assignee_is_422(self, assignee):
        with pytest.raises(ValidationFailed):
            build(assignee=assignee)

    @pytest.mark.parametrize("org", ["PAIN-1", "a", "A" * 20])
    def test_org_codes(self, org):
        assert build(org=org).org == org

    @pytest.mark.parametrize("org", ["", "A" * 21, "PAIN 1", "PAIN_1", "x;drop"])
    def test_bad_org_codes_are_422(self, org):
        with pytest.raises(ValidationFailed):
            build(org=org)

    @pytest.mark.parametrize("pid", ["PT_X", "pt x", "", "p" * 81])
    def test_bad_patient_ids_are_422(self, pid):
        with pytest.raises(ValidationFailed):
            build(patient_id=pid)

    def test_min_age_days_is_an_upper_bound_on_raised_at(self):
        assert build(min_age_days=3).raised_before == NOW - timedelta(days=3)
        assert build(min_age_days=0).raised_before == NOW

    def test_the_stricter_of_raised_before_and_min_age_applies(self):
        early = NOW - timedelta(days=10)
        assert build(min_age_days=3, raised_before=early).raised_before == early
        late = NOW - timedelta(days=1)
        assert build(min_age_days=3, raised_before=late).raised_before == NOW - timedelta(days=3)

    @pytest.mark.parametrize("days", [-1, alerts.MAX_AGE_DAYS + 1])
    def test_min_age_days_out_of_range_is_422(self, days):
        with pytest.raises(ValidationFailed):
            build(min_age_days=days)

    def test_an_empty_window_is_422(self):
        with pytest.raises(ValidationFailed):
            build(raised_after=NOW, raised_before=NOW)
        with pytest.raises(ValidationFailed):
            build(raised_after=NOW - timedelta(days=1), min_age_days=2)

    def test_a_window_is_kept(self):
        a, b = NOW - timedelta(days=5), NOW - timedelta(days=1)
        f = build(raised_after=a, raised_before=b)
        assert (f.raised_after, f.raised_before) == (a, b)

    @pytest.mark.parametrize("field", ["raised_after", "raised_before"])
    def test_times_without_an_offset_are_422(self, field):
        with pytest.raises(ValidationFailed):
            build(**{field: datetime(2026, 3, 1, 9, 0)})


class TestSort:
    def test_severity_rank_puts_urgent_first(self):
        ranked = sorted(Severity, key=lambda s: alerts.SEVERITY_RANK[s])
        assert ranked == [Severity.URGENT, Severity.HIGH, Severity.MEDIUM]


def content(status: str = "open", assignee: str | None = None, **kw: object) -> AlertContent:
    return AlertContent(
        kind=str(kw.get("kind", "looping")),
        rule=str(kw.get("rule", "looping.re_referral")),
        severity=str(kw.get("severity", "high")),
        status=status,
        assignee=assignee,
        referral_ids=("r1",),
    )


class TestReconcile:
    """What the journey's alert event does to the inbox's row."""

    def test_the_echo_of_an_action_the_row_shows_moves_neither_version_nor_history(self):
        acked = content("acknowledged", "coord-1")
        plan = reconcile(
            row=acked, row_seq=1, event=acked, seq=2, echo=True, later_actions_pending=False
        )
        assert plan == Reconciliation(take_content=False, new_version=False, history=False)

    def test_an_echo_overtaken_by_the_coordinators_next_action_keeps_the_row(self):
        # acknowledged, then snoozed, before the acknowledgement's echo arrived
        plan = reconcile(
            row=content("snoozed", "coord-1"),
            row_seq=1,
            event=content("acknowledged", "coord-1"),
            seq=2,
            echo=True,
            later_actions_pending=True,
        )
        assert plan == Reconciliation(take_content=False, new_version=False, history=False)

    def test_an_echo_on_top_of_a_change_the_inbox_showed_since_takes_the_journeys(self):
        # the journey escalated before it heard of the acknowledgement, then applied it
        plan = reconcile(
            row=content("escalated", severity="urgent"),
            row_seq=2,
            event=content("acknowledged", "coord-1", severity="urgent"),
            seq=3,
            echo=True,
            later_actions_pending=False,
        )
        assert plan == Reconciliation(take_content=True, new_version=True, history=False)

    @pytest.mark.parametrize(
        ("before", "after"),
        [
            (content("acknowledged", "coord-1"), content("escalated", "coord-1")),
            (content("acknowledged", "coord-1"), content("progressing", "coord-1")),
            (content("snoozed", "coord-1"), content("open", "coord-1")),
            (content("open"), content("resolved")),
            (content("open"), content("open", severity="urgent")),
            (content("open"), content("open", rule="looping.ping_pong")),
        ],
    )
    def test_the_journeys_own_change_is_news(self, before, after):
        plan = reconcile(
            row=before, row_seq=2, event=after, seq=3, echo=False, later_actions_pending=False
        )
        assert plan == Reconciliation(take_content=True, new_version=True, history=True)

    @pytest.mark.parametrize("echo", [True, False])
    @pytest.mark.parametrize("seq", [1, 2])
    def test_an_event_not_newer_than_the_row_changes_nothing(self, echo, seq):
        assert (
            reconcile(
                row=content("open"),
                row_seq=2,
                event=content("resolved"),
                seq=seq,
                echo=echo,
                later_actions_pending=False,
            )
            is None
        )
