"""The rules of a referral's imported history: pure and synchronous, no I/O.

An EHR (e-RS, a PAS) sends a referral it already holds as the list of states it reached, each
with the time it reached it. Every step must be a transition the state machine (domain.py)
allows from the state before it, in time order, in the past. The same source referral sent
again is compared step by step with what Waymark stored from it: the same steps are nothing
new; more steps (a later extract) are applied from where Waymark stands; a different step is a
contradiction, named by its index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from services.referrals import domain
from services.referrals.domain import RULES, Action, ReferralState, Transition
from shared.errors import Conflict, ValidationFailed

S = ReferralState


@dataclass(frozen=True)
class Step:
    """One step of a source's history: the state reached, when, and why."""

    state: ReferralState
    at: datetime
    reason: str | None = None
    appointment_at: datetime | None = None

    def same_as(self, other: Step) -> bool:
        return (
            self.state == other.state
            and self.at == other.at  # aware datetimes: the same instant in any offset
            and (self.reason or None) == (other.reason or None)
            and self.appointment_at == other.appointment_at
        )

    def describe(self) -> str:
        extra = f", reason {self.reason}" if self.reason else ""
        if self.appointment_at is not None:
            extra += f", appointment {self.appointment_at.isoformat()}"
        return f"{self.state.value} at {self.at.isoformat()}{extra}"


@dataclass(frozen=True)
class PlannedStep:
    index: int  # its place in the history sent
    step: Step
    transition: Transition | None  # None: the first step, the referral submitted


@dataclass(frozen=True)
class Plan:
    """What to do with a history sent: the steps to apply (maybe none)."""

    new_steps: list[PlannedStep]
    stored: int  # how many of the source's steps Waymark held before


def action_to(
    state: ReferralState, target: ReferralState, held_from: ReferralState | None
) -> Action:
    """The one action that takes a referral from `state` to `target` (a resume goes back to
    the state before the hold); raise naming what `state` allows."""
    for action, rule in RULES.items():
        if state not in rule.from_states or action is Action.SUBMIT:
            continue
        to = rule.to_state if rule.to_state is not None else held_from
        if to == target:
            return action
    reachable = sorted(
        {
            (r.to_state or held_from).value  # type: ignore[union-attr]
            for a, r in RULES.items()
            if state in r.from_states and a is not Action.SUBMIT and (r.to_state or held_from)
        }
    )
    raise ValidationFailed(
        f"a referral that is {state.value} cannot become {target.value}; it can become: "
        f"{', '.join(reachable) or 'nothing (it is closed)'}"
    )


def check_times(
    steps: Sequence[Step],
    *,
    now: datetime,
    earliest: date,
    after: datetime | None = None,
    offset: int = 0,
) -> None:
    """In time order, in the past, not before `earliest`, and after `after` (the last step
    Waymark holds) when appending; `offset`: the index of steps[0] in the history sent."""
    previous = after
    for i, s in enumerate(steps, start=offset):
        where = f"history[{i}] ({s.state.value})"
        if s.at > now:
            raise ValidationFailed(f"{where}: at {s.at.isoformat()} is in the future")
        if s.at.date() < earliest:
            raise ValidationFailed(
                f"{where}: at {s.at.isoformat()} is before {earliest.isoformat()}, "
                "the earliest date a history may carry"
            )
        if previous is not None and s.at < previous:
            raise ValidationFailed(
                f"{where}: at {s.at.isoformat()} is earlier than the step before it "
                f"({previous.isoformat()}); a history is in time order"
            )
        if s.appointment_at is not None and s.state is not S.BOOKED:
            raise ValidationFailed(f"{where}: only a booked step has an appointment_at")
        if s.appointment_at is not None and not 2000 <= s.appointment_at.year <= 2100:
            raise ValidationFailed(f"{where}: appointment_at must be between 2000 and 2100")
        previous = s.at


def plan_steps(
    steps: Sequence[Step],
    *,
    start: int,
    state: ReferralState | None,
    held_from: ReferralState | None,
) -> list[PlannedStep]:
    """Check steps[start:] against the state machine from `state` (None: a new referral, whose
    first step must be `submitted`); return them with their transitions."""
    planned: list[PlannedStep] = []
    for i in range(start, len(steps)):
        s = steps[i]
        where = f"history[{i}] ({s.state.value})"
        if state is None:
            if s.state is not S.SUBMITTED:
                raise ValidationFailed(
                    f"{where}: a history starts with the referral submitted "
                    f"(state 'submitted'), not {s.state.value}"
                )
            if s.reason is not None:
                raise ValidationFailed(f"{where}: submitting takes no reason")
            planned.append(PlannedStep(i, s, None))
            state = S.SUBMITTED
            continue
        try:
            action = action_to(state, s.state, held_from)
            transition = domain.plan_transition(
                action=action,
                state=state,
                held_from=held_from,
                reason_code=s.reason,
                has_appointment=s.appointment_at is not None,
            )
        except (ValidationFailed, Conflict) as exc:
            # every refusal of a history is about its content: 422 naming the step
            raise ValidationFailed(f"{where}: {exc.message}") from None
        planned.append(PlannedStep(i, s, transition))
        held_from = state if action is Action.HOLD else None
        state = transition.to_state
    return planned


def plan_history(
    sent: Sequence[Step],
    *,
    stored: Sequence[Step],
    current: ReferralState | None,
    held_from: ReferralState | None,
    last_at: datetime | None,
    now: datetime,
    earliest: date,
) -> Plan:
    """What to apply of a history `sent`, given the source's steps Waymark `stored` (none
    for a new referral) and where the referral stands now (`current`, which may have moved on
    since by a live action; `last_at` is the time of its last transition)."""
    check_times(sent, now=now, earliest=earliest)
    for i, (old, new) in enumerate(zip(stored, sent, strict=False)):
        if not old.same_as(new):
            raise Conflict(
                f"history[{i}] contradicts what Waymark stored from this source: stored "
                f"{old.describe()}, sent {new.describe()}",
                step=i,
            )
    if len(sent) <= len(stored):
        return Plan([], len(stored))  # nothing new (or an older extract): nothing to do
    if stored:
        if current is not stored[-1].state:
            raise Conflict(
                f"history[{len(stored)}] onwards cannot be applied: the referral has moved on "
                f"in Waymark since it was imported (it is {current.value if current else None}, "
                f"the source's last stored step is {stored[-1].state.value})",
                step=len(stored),
            )
        check_times(
            sent[len(stored) :], now=now, earliest=earliest, after=last_at, offset=len(stored)
        )
    planned = plan_steps(sent, start=len(stored), state=current, held_from=held_from)
    return Plan(planned, len(stored))
