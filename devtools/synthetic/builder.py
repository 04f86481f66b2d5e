"""The builder every synthetic journey template writes with: referrals, their steps and
endings (with reason codes of the one vocabulary), contacts, at margins of days ago."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from workflows.journeys.state import JourneyEvent

#: the namespace of the synthetic journeys' event ids (uuid5 of their content)
SYNTHETIC_EVENTS = uuid.UUID("0f6b3f1e-5d4c-4b7a-9a51-8c2d6e1f7a30")
CATEGORIES = {
    "pain_management_programme": ("svc-pain-mgmt-programme", "PAIN-RTH"),
    "talking_therapies_ltc": ("svc-talking-therapies-ltc", "TT-TALK1"),
    "msk_physiotherapy": ("svc-msk-physio", "PHYSIO-1"),
    "social_prescribing": ("svc-social-prescribing", "SP-LINK1"),
    "peer_support": ("svc-peer-support", "PEER-1"),
}
#: the categories whose standard is referral to treatment (rules.toml
#: `[stall.rtt.weeks_by_category]`); the others have none
RTT_CATEGORIES = ("pain_management_programme", "talking_therapies_ltc")

# Ending reasons by what they mean for the journey (shared/vocabulary.py CLOSURE_OUTCOMES)
TREATED = ("treatment-completed", "goals-met", "self-management", "onward-referral")
ADVICE = ("advice-and-guidance-given", "manage-in-primary-care")
NOT_ACCEPTED = (
    "not-appropriate-for-service",
    "does-not-meet-criteria",
    "service-unavailable",
    "insufficient-information",
)
RETURNED_NOT_TREATED = ("refer-elsewhere", "insufficient-information")
REFERRER_CANCELLED = ("no-longer-required", "referred-in-error")


def content_id(patient_id: str, e: JourneyEvent) -> str:
    """An event's id as a function of everything it says: the same seed laid out from another
    `now` is other events with other ids, never an id seen before with other content (a
    CloudEvents source + id pair names one event)."""
    content = {k: v for k, v in asdict(e).items() if k != "event_id"}
    canonical = json.dumps([patient_id, content], sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(SYNTHETIC_EVENTS, canonical))


@dataclass
class SyntheticJourney:
    patient_id: str
    template: str
    events: list[JourneyEvent] = field(default_factory=list)
    expected_rules: set[str] = field(default_factory=set)
    #: False for the templates in `AMBIGUOUS`
    clear_cut: bool = True


class Builder:
    def __init__(self, rng: random.Random, now: datetime, patient_id: str) -> None:
        self.rng, self.now, self.patient_id = rng, now, patient_id
        self.events: list[JourneyEvent] = []
        self.n = 0

    def referral(
        self,
        category: str,
        steps: list[tuple[str, float]],
        *,
        priority: str = "routine",
        reason: str | None = None,
        appointment_in_days: float | None = None,
    ) -> str:
        """Add a referral; steps are (state, days ago); `reason` is its ending's."""
        self.n += 1
        rid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        service, org = CATEGORIES[category]
        previous: str | None = None
        for state, days_ago in steps:
            at = self.now - timedelta(days=days_ago)
            appt = None
            if state == "booked":
                appt = (
                    self.now + timedelta(days=appointment_in_days)
                    if appointment_in_days is not None
                    else at + timedelta(days=3)
                )
            ended = state in ("rejected", "returned", "discharged", "cancelled")
            # drawn all the same, so a seed's referrals keep the ids they had; the event's id
            # is its content's (below)
            self.rng.getrandbits(128)
            self.events.append(
                JourneyEvent(
                    event_id="",
                    event_type=f"uk.waymark.referral.{state.replace('_', '-')}",
                    occurred_at=at.isoformat(),
                    referral_id=rid,
                    state=state,
                    from_org="GP-A81001",
                    to_org=org,
                    to_service_id=service,
                    service_category=category,
                    priority=priority,
                    reason_codes=["279039007"],
                    previous_state=previous,
                    transition_reason=(reason or _default_reason(state)) if ended else None,
                    appointment_at=appt.isoformat() if appt else None,
                )
            )
            self.events[-1].event_id = content_id(self.patient_id, self.events[-1])
            previous = state
        return rid

    def course(
        self, category: str, start: float, *, sessions: int = 1, reason: str | None = None
    ) -> float:
        """A referral accepted, seen `sessions` times a week apart and discharged treated
        (`reason`, default one of TREATED); the discharge, days ago."""
        steps = [("submitted", start), ("accepted", start - 2)]
        at = start - 4
        for _ in range(sessions):
            steps += [("booked", at), ("attended", at - 3)]
            at -= 7
        end = at + 7 - 3 - 2  # two days after the last session
        steps.append(("discharged", end))
        self.referral(category, steps, reason=reason or self.rng.choice(TREATED))
        return end

    #: how long each way of closing a door takes from submission, days
    DOOR_DAYS = {"rejected": 3, "returned": 3, "cancelled": 4, "discharged": 12}

    def closed_door(
        self,
        category: str,
        *,
        start: float | None = None,
        end: float | None = None,
        returned_ok: bool = True,
    ) -> tuple[float, float, str]:
        """A referral ending not treated (a door closed): not accepted, returned to be referred
        elsewhere, discharged after missed appointments or cancelled because the service was
        withdrawn; submitted `start` days ago or ending `end` days ago. (submitted, ended, days
        ago; the ending state)."""
        kinds = ["rejected", "discharged", "cancelled"] + (["returned"] if returned_ok else [])
        kind = self.rng.choice(kinds)
        if start is None:
            assert end is not None
            start = end + self.DOOR_DAYS[kind]
        end = start - self.DOOR_DAYS[kind]
        if kind == "rejected":
            self.referral(
                category,
                [("submitted", start), ("rejected", end)],
                reason=self.rng.choice(NOT_ACCEPTED),
            )
        elif kind == "returned":
            self.referral(
                category,
                [("submitted", start), ("returned", end)],
                reason=self.rng.choice(RETURNED_NOT_TREATED),
            )
        elif kind == "cancelled":
            self.referral(
                category,
                [("submitted", start), ("accepted", start - 2), ("cancelled", end)],
                reason="service-withdrawn",
            )
        else:
            self.referral(
                category,
                [
                    ("submitted", start),
                    ("accepted", start - 2),
                    ("booked", start - 4),
                    ("did_not_attend", start - 7),
                    ("discharged", end),
                ],
                reason="did-not-attend-discharged",
            )
        return start, end, kind

    def doors(self, categories: Sequence[str], last_end: float) -> None:
        """Doors closed one after another by different services, the next tried 2-8 days
        after the last closed; the last closing `last_end` days ago. One at most is a return
        (two returns are `returned_repeatedly` as well)."""
        end, returned = last_end, False
        for cat in reversed(categories):
            start, _, kind = self.closed_door(cat, end=end, returned_ok=not returned)
            returned = returned or kind == "returned"
            end = start + self.jitter(2, 8)

    def jitter(self, lo: float, hi: float) -> float:
        return round(self.rng.uniform(lo, hi), 2)

    def categories(self, k: int, among: Sequence[str] | None = None) -> list[str]:
        return self.rng.sample(sorted(among or CATEGORIES), k)


def _default_reason(state: str) -> str:
    return {
        "rejected": "does-not-meet-criteria",
        "returned": "advice-and-guidance-given",
        "discharged": "treatment-completed",
        "cancelled": "patient-request",
    }[state]
