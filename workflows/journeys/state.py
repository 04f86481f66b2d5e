"""The journey's state and the inputs of its signals: plain dataclasses that Temporal's JSON
converter carries, with times as ISO 8601 strings (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class JourneyEvent:
    """A referral event as the journey sees it: ids, codes and states, nothing personal."""

    event_id: str
    event_type: str
    occurred_at: str
    referral_id: str
    state: str
    from_org: str
    to_org: str
    to_service_id: str
    service_category: str
    priority: str
    reason_codes: list[str] = field(default_factory=list)
    referred_from: str | None = None
    previous_state: str | None = None
    transition_reason: str | None = None
    appointment_at: str | None = None
    # the receiving service's name as the directory lists it (public directory data, looked up
    # by the bridge; never in the referral event itself), for explanations
    service_name: str | None = None


@dataclass
class AssessmentEvent:
    """A screening result from the care plan (PHQ-9, GAD-7, STarT Back)."""

    event_id: str
    occurred_at: str
    assessment_id: str
    instrument: str
    band: str
    total: int
    item9: int | None = None  # PHQ-9 item 9, when known
    # set by the care plans service when PHQ-9 item 9 was answered above 0 (events carry the
    # flag, never the answers)
    safety_flag: bool = False
    # the person's registered GP practice and the plan holder's organisation (ODS codes), who
    # must hear of a PHQ-9 item 9 answer above 0 at once
    registered_practice: str | None = None
    holder_org: str | None = None


@dataclass
class PlanActivity:
    """A change to the person's care plan (a new version): a next step taken for them."""

    event_id: str
    occurred_at: str


@dataclass
class ContactEvent:
    """A contact with care outside referrals (A&E, NHS 111, out-of-hours, crisis team, GP,
    admission), as the EHRs report it through the integration service: codes only. One
    encounter changes over time (arrived, finished, cancelled): `revision` rises with each
    change, and the journey keeps the highest."""

    event_id: str
    occurred_at: str  # when Waymark heard of this revision
    encounter_id: str
    revision: int
    contact_kind: str  # shared/vocabulary.py ContactKind
    planned: bool
    status: str  # shared/vocabulary.py ContactStatus
    started_at: str  # when the contact happened: the rules' event time
    ended_at: str | None = None
    source_org: str = ""  # ODS code of where it happened
    chief_complaint: str | None = None  # SNOMED CT (the ECDS chief complaint)
    diagnosis_codes: list[str] = field(default_factory=list)  # SNOMED CT
    attendance_category: str | None = None  # ECDS attendance category, A&E only
    discharge_destination: str | None = None  # SNOMED CT (ECDS)


@dataclass
class AlertAction:
    """A coordinator's action on an alert, from the coordinator inbox."""

    event_id: str
    alert_id: str
    action: str  # acknowledge | assign | resolve | snooze
    actor: str
    occurred_at: str
    assignee: str | None = None
    reason: str | None = None
    until: str | None = None  # snooze until


@dataclass
class Step:
    state: str
    at: str
    event_id: str
    event_type: str
    reason: str | None = None


@dataclass
class Episode:
    """One referral in the journey, with every state it has been in."""

    referral_id: str
    service_id: str
    category: str
    to_org: str
    from_org: str
    priority: str
    referred_from: str | None
    appointment_at: str | None = None
    steps: list[Step] = field(default_factory=list)
    service_name: str | None = None

    @property
    def current(self) -> Step:
        return self.steps[-1]

    @property
    def submitted_at(self) -> str | None:
        return next((s.at for s in self.steps if s.state == "submitted"), None)


@dataclass
class Evidence:
    referral_id: str | None
    at: str
    state: str
    detail: str = ""
    # the contact this evidence is (contact rules); None for referral steps and assessments
    encounter_id: str | None = None


@dataclass
class Alert:
    alert_id: str
    key: str  # the condition; one condition never raises a second alert
    kind: str  # stalled | looping | safety
    rule: str
    severity: str  # urgent | high | medium
    explanation: str
    evidence: list[Evidence]
    status: str  # open | acknowledged | escalated | resolved | snoozed | progressing
    raised_at: str
    seq: int = 1  # bumped on every change; the read model keeps the highest
    assignee: str | None = None
    acknowledged_at: str | None = None
    escalated_at: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None
    snoozed_until: str | None = None
    referral_id: str | None = None  # the referral a stall is about
    # organisations (ODS codes) the alert is addressed to besides the ICS's coordinators
    recipient_orgs: list[str] = field(default_factory=list)
    # when the cause went (the person since accepted and seen), and how: status "progressing"
    progressing_at: str | None = None
    progress: str | None = None


@dataclass
class AlertChange:
    """What the activity persists and publishes: the alert after a change, and the change."""

    patient_id: str
    change: str  # raised | escalated | acknowledged | assigned | snoozed | reopened | resolved
    alert: Alert
    at: str


@dataclass
class JourneyState:
    patient_id: str
    episodes: list[Episode] = field(default_factory=list)
    assessments: list[AssessmentEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    plan_activity: list[str] = field(default_factory=list)  # when the care plan changed
    # contacts with care outside referrals: the latest revision of each encounter, in time order
    # (rules_contacts.py); those older than the rules' longest window are dropped once judged
    contacts: list[ContactEvent] = field(default_factory=list)
    seen_event_ids: list[str] = field(default_factory=list)
    duplicates_ignored: int = 0
    events_applied: int = 0
