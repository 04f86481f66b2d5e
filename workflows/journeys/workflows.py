"""PatientJourney: one long-running workflow per patient (workflow id `journey-<patient id>`).

It is started or signalled by the Kafka->Temporal bridge with every referral event of the
patient, keeps the journey (each referral's latest state and history), and ignores a second
delivery of the same event id. Loop, stall and safety rules build on this state.

Workflow code does no I/O and never reads the clock: time comes from the events and
`workflow.now()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

#: how many recent event ids are remembered for de-duplication; the bridge redelivers only
#: recent events (at-least-once from Kafka), so a bounded window is enough
SEEN_WINDOW = 5000


@dataclass
class JourneyEvent:
    """A referral event as the journey sees it: ids, codes and states, nothing personal."""

    event_id: str
    event_type: str
    occurred_at: str  # ISO 8601, from the event
    referral_id: str
    state: str
    from_org: str
    to_org: str
    to_service_id: str
    service_category: str
    priority: str
    reason_codes: list[str] = field(default_factory=list)
    referred_from: str | None = None


@dataclass
class ReferralView:
    referral_id: str
    state: str
    from_org: str
    to_org: str
    to_service_id: str
    service_category: str
    priority: str
    referred_from: str | None
    first_seen: str
    last_changed: str
    history: list[str] = field(default_factory=list)  # event types, in order applied


@dataclass
class JourneyInput:
    patient_id: str
    # carried over by continue-as-new
    referrals: list[ReferralView] = field(default_factory=list)
    seen_event_ids: list[str] = field(default_factory=list)


@dataclass
class JourneyView:
    patient_id: str
    referrals: list[ReferralView]
    events_applied: int
    duplicates_ignored: int


@workflow.defn
class PatientJourney:
    def __init__(self) -> None:
        self._patient_id = ""
        self._referrals: dict[str, ReferralView] = {}
        self._seen: dict[str, None] = {}  # insertion-ordered set
        self._applied = 0
        self._duplicates = 0

    @workflow.run
    async def run(self, input: JourneyInput) -> None:
        self._patient_id = input.patient_id
        for r in input.referrals:
            self._referrals[r.referral_id] = r
        for eid in input.seen_event_ids:
            self._seen[eid] = None
        # a journey has no natural end; it hands over to a fresh run when history grows
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested())
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(JourneyInput(
            patient_id=self._patient_id, referrals=list(self._referrals.values()),
            seen_event_ids=list(self._seen)))

    @workflow.signal
    def referral_event(self, event: JourneyEvent) -> None:
        if event.event_id in self._seen:
            self._duplicates += 1
            return
        self._seen[event.event_id] = None
        if len(self._seen) > SEEN_WINDOW:
            del self._seen[next(iter(self._seen))]
        self._applied += 1
        view = self._referrals.get(event.referral_id)
        if view is None:
            view = ReferralView(
                referral_id=event.referral_id, state=event.state, from_org=event.from_org,
                to_org=event.to_org, to_service_id=event.to_service_id,
                service_category=event.service_category, priority=event.priority,
                referred_from=event.referred_from, first_seen=event.occurred_at,
                last_changed=event.occurred_at)
            self._referrals[event.referral_id] = view
        # events of one patient arrive in order (one Kafka partition per patient); an older
        # event than the one applied last does not move the state back
        if event.occurred_at >= view.last_changed:
            view.state = event.state
            view.last_changed = event.occurred_at
        view.history.append(event.event_type)

    @workflow.query
    def journey(self) -> JourneyView:
        return JourneyView(patient_id=self._patient_id,
                           referrals=sorted(self._referrals.values(),
                                            key=lambda r: (r.first_seen, r.referral_id)),
                           events_applied=self._applied, duplicates_ignored=self._duplicates)
