"""PatientJourney: one long-running workflow per patient (workflow id `journey-<patient id>`).

Started or signalled by the Kafka->Temporal bridge with every referral event (and, as those
services land, care-plan assessments and coordinators' alert actions). It keeps the journey,
applies the loop, stall and safety rules in workflows/journeys/rules.py, and raises alerts
through an idempotent activity. One loop sleeps until the earliest deadline (a durable timer)
or the next signal, whichever comes first; progress moves the deadline.

Workflow code does no I/O and never reads the clock: time is `workflow.now()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.journeys.rules import (
        Rules,
        apply_action,
        apply_assessment,
        apply_contact,
        apply_plan_activity,
        apply_referral_event,
        evaluate,
        next_wake,
    )
    from workflows.journeys.state import (
        Alert,
        AlertAction,
        AlertChange,
        AssessmentEvent,
        ContactEvent,
        Episode,
        JourneyEvent,
        JourneyState,
        PlanActivity,
    )

#: the rules' switches of the patches before "patches-before-rules" (see PatientJourney.run)
EVERY_EARLIER_PATCH: dict[str, object] = {
    "bands_from_vocabulary": True,
    "version": 2,
    "contact_rules": True,
}

#: continue as new well before Temporal's own limits, so replays stay cheap
MAX_HISTORY_EVENTS = 2000


@dataclass
class JourneyInput:
    patient_id: str
    state: JourneyState | None = None  # carried over by continue-as-new
    max_history_events: int = MAX_HISTORY_EVENTS


@dataclass
class JourneyView:
    patient_id: str
    episodes: list[Episode]
    alerts: list[Alert]
    events_applied: int
    duplicates_ignored: int
    # contacts with care outside referrals, the latest revision of each, in time order (for the
    # timeline's marks beside the referral lanes; codes only)
    contacts: list[ContactEvent] = field(default_factory=list)


@workflow.defn
class PatientJourney:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        # set up in init, so signals delivered with the start are applied to this state
        self._state = input.state or JourneyState(patient_id=input.patient_id)
        self._pending: list[AlertChange] = []
        self._dirty = True
        self._rules: Rules | None = None
        # stalls are judged once referral events have settled (see rules.toml)
        self._settle_until: datetime | None = None
        # asked to start afresh (continue as new) to take up new rules or new rule versions
        self._renew = False

    @workflow.run
    async def run(self, input: JourneyInput) -> None:
        # HAZ-100: the patches are decided before the rules' local activity. A busy worker (a
        # query waiting on the first task) can complete a workflow task with the activity's
        # marker and run the code after it in the next task; a patch decided there replays as
        # absent and the journey's tasks fail for ever. A run started by code with this patch
        # takes every earlier patch with it: one marker, not four (each patch also writes a
        # search attribute, and Temporal's writes are what a journey's start costs). Runs
        # recorded before it decide the earlier patches after the activity, as they did.
        # A new patch must be decided here too, before the activity.
        patches_first = workflow.patched("patches-before-rules")
        rules = await workflow.execute_local_activity(
            "load_journey_rules", result_type=Rules, start_to_close_timeout=timedelta(seconds=30)
        )
        switches = EVERY_EARLIER_PATCH if patches_first else self._decide_patches()
        self._rules = dataclasses.replace(rules, **switches)
        while True:
            self._dirty = False
            now = workflow.now()
            settled = self._settle_until is None or now >= self._settle_until
            changes = self._pending + evaluate(self._state, self._rules, now, stalls=settled)
            self._pending = []
            for change in changes:
                await workflow.execute_activity(
                    "record_alert_change",
                    change,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                )
            if self._renew or self._should_continue_as_new(input):
                break
            wake = next_wake(self._state, self._rules, workflow.now())
            if not settled and self._settle_until is not None:
                wake = min(w for w in (wake, self._settle_until) if w is not None)
            timeout = (wake - workflow.now()) if wake is not None else None
            try:
                await workflow.wait_condition(
                    lambda: self._dirty or self._renew or self._should_continue_as_new(input),
                    timeout=timeout,
                )
            except TimeoutError:
                pass  # a deadline: evaluate
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            JourneyInput(
                patient_id=self._state.patient_id,
                state=self._state,
                max_history_events=input.max_history_events,
            )
        )

    @staticmethod
    def _decide_patches() -> dict[str, object]:
        """The rules' switches set by the patches a run recorded before "patches-before-rules"
        takes (decided once, after its rules were loaded)."""
        switches: dict[str, object] = {}
        if workflow.patched("high-risk-bands-from-vocabulary"):
            # one vocabulary (shared/vocabulary.py): STarT Back high alerts as PHQ-9 and GAD-7
            # severe do; histories recorded before this keep their old decisions on replay
            switches["bands_from_vocabulary"] = True
        if workflow.patched("alert-rules-v2"):
            # alert rules version 2 (issue #15, docs/clinical-safety/alert-rules.md): closure
            # reasons decide, windows on event time, closed doors, no next step, pathway
            # prompts, progressing. A history recorded before this replays with version 1; a
            # journey running when this is deployed takes it at its next workflow task.
            switches["version"] = 2
        if workflow.patched("contact-rules"):
            # contacts with care outside referrals (issue #17, rules_contacts.py): frequent
            # attender, unplanned care while waiting, repeated A&E for pain. A history recorded
            # before this replays without them; a running journey takes them up when renewed
            # (the `renew` signal: a patch is decided once, at the start of a run).
            switches["contact_rules"] = True
        return switches

    @staticmethod
    def _should_continue_as_new(input: JourneyInput) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > input.max_history_events
        )

    @workflow.signal
    def referral_event(self, event: JourneyEvent) -> None:
        if apply_referral_event(self._state, event):
            settle = timedelta(seconds=self._rules.settle_seconds if self._rules else 60)
            self._settle_until = workflow.now() + settle
            self._dirty = True

    @workflow.signal
    def contact(self, event: ContactEvent) -> None:
        """A contact with care from the EHRs (A&E, 111, out-of-hours, crisis, GP). Judged, like
        the stalls, once the journey's events have settled: a backlog is judged whole."""
        if apply_contact(self._state, event):
            settle = timedelta(seconds=self._rules.settle_seconds if self._rules else 60)
            self._settle_until = workflow.now() + settle
            self._dirty = True

    @workflow.signal
    def assessment(self, event: AssessmentEvent) -> None:
        if apply_assessment(self._state, event):
            self._dirty = True

    @workflow.signal
    def renew(self) -> None:
        """Continue as new with the journey so far, loading the rules afresh: how a running
        journey takes up a changed rules.toml or a new version of the rules (a patch decided
        at the start of a run holds for the whole run). `python -m workflows.journeys.renew`
        sends it to every running journey."""
        self._renew = True

    @workflow.signal
    def plan_activity(self, event: PlanActivity) -> None:
        if apply_plan_activity(self._state, event):
            self._dirty = True

    @workflow.signal
    def alert_action(self, action: AlertAction) -> None:
        changes = apply_action(self._state, action)
        if changes:
            self._pending.extend(changes)
            self._dirty = True

    @workflow.query
    def journey(self) -> JourneyView:
        return JourneyView(
            patient_id=self._state.patient_id,
            episodes=self._state.episodes,
            alerts=self._state.alerts,
            events_applied=self._state.events_applied,
            duplicates_ignored=self._state.duplicates_ignored,
            contacts=self._state.contacts,
        )

    @workflow.query
    def open_alerts(self) -> list[Alert]:
        return [a for a in self._state.alerts if a.status != "resolved"]
