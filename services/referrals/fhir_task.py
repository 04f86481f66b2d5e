"""A receiving system's status write-back as an R4 Task: what state it asks for, why, and when
the appointment is. Pure: no I/O (the route reads the referral and calls the handler).

A referral has one Task (its id is the referral's id; `focus` and `basedOn` name the
ServiceRequest). The receiver sends it back with a new `status`; `businessStatus` (a code of
STATE_SYSTEM) names the exact Waymark state where FHIR's task status is coarser; `statusReason`
(a code of REASON_SYSTEM) is the state machine's reason; `restriction.period.start` is a
booking's appointment; `note[0].text` is advice to the referrer (a return), kept in Waymark.

Without businessStatus, Task.status means:
- accepted: accepted; on-hold: on_hold; cancelled: cancelled; completed: discharged;
- rejected: rejected, or returned when statusReason is a return-to-referrer reason only;
- in-progress: booked (an attendance or a missed appointment needs businessStatus);
- requested: back to where it was before a hold (resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.referrals.domain import REJECT_REASONS, RETURN_REASONS, ReferralState
from services.referrals.fhir import REASON_SYSTEM, STATE_SYSTEM, TASK_STATUS, FhirInvalid

S = ReferralState

_DEFAULT_STATE: dict[str, ReferralState] = {
    "accepted": S.ACCEPTED,
    "on-hold": S.ON_HOLD,
    "cancelled": S.CANCELLED,
    "completed": S.DISCHARGED,
    "in-progress": S.BOOKED,
}


@dataclass(frozen=True)
class TaskUpdate:
    """What a Task sent back asks for."""

    target: ReferralState
    reason_code: str | None
    appointment_at: datetime | None
    note: str | None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def referenced_referral(ref: str | None) -> str | None:
    """The referral id a `ServiceRequest/{id}` reference names (None if it names none)."""
    if not ref or not ref.startswith("ServiceRequest/"):
        return None
    return ref.split("/", 1)[1] or None


def task_referral_id(raw: Any) -> str:
    """The referral a Task sent with POST is about: its basedOn (or focus) ServiceRequest."""
    task = validate_task(raw)
    refs = {referenced_referral(r.reference) for r in [*(task.basedOn or []), task.focus] if r} - {
        None
    }
    if len(refs) != 1:
        raise FhirInvalid(
            "Task.basedOn (or Task.focus) must reference exactly one ServiceRequest "
            "(ServiceRequest/<referral id>)"
        )
    return str(refs.pop())


def validate_task(raw: Any) -> Any:
    from fhir.resources.R4B.task import Task

    if not isinstance(raw, dict) or raw.get("resourceType") != "Task":
        raise FhirInvalid("the body must be a FHIR Task resource")
    try:
        return Task.model_validate(raw)
    except ValidationError as exc:
        raise FhirInvalid(f"not a valid R4 Task: {_problems(exc)}") from None


def _codes(concept: Any, system: str, element: str) -> list[str]:
    if concept is None:
        return []
    codings = concept.coding or []
    other = [c.system for c in codings if c.system != system]
    if other or (not codings and concept.text):
        raise FhirInvalid(f"Task.{element} must be coded in {system}")
    return [c.code for c in codings if c.code]


def task_update(
    raw: Any, *, referral_id: str, state: ReferralState, held_from: ReferralState | None
) -> TaskUpdate:
    """Validate a Task sent back for `referral_id` (now in `state`) and say what it asks."""
    task = validate_task(raw)
    if task.id is not None and task.id != referral_id:
        raise FhirInvalid(f"Task.id {task.id!r} is not the Task addressed ({referral_id})")
    for ref in [*(task.basedOn or []), task.focus]:
        if ref is not None and referenced_referral(ref.reference) not in (None, referral_id):
            raise FhirInvalid(
                f"Task.basedOn/focus names another ServiceRequest ({ref.reference}); "
                f"this Task is about ServiceRequest/{referral_id}"
            )
    business = _codes(task.businessStatus, STATE_SYSTEM, "businessStatus")
    reasons = _codes(task.statusReason, REASON_SYSTEM, "statusReason")
    if len(business) > 1 or len(reasons) > 1:
        raise FhirInvalid("Task.businessStatus and Task.statusReason carry one code each")
    reason = reasons[0] if reasons else None
    if business:
        try:
            target = ReferralState(business[0])
        except ValueError:
            raise FhirInvalid(
                f"Task.businessStatus {business[0]!r} is not a referral state of {STATE_SYSTEM}; "
                f"one of: {', '.join(s.value for s in ReferralState)}"
            ) from None
        if TASK_STATUS[target.value] != task.status:
            raise FhirInvalid(
                f"Task.status {task.status!r} does not go with businessStatus {target.value!r} "
                f"(which is Task.status {TASK_STATUS[target.value]!r})"
            )
    elif task.status == "rejected":
        only_return = reason in RETURN_REASONS and reason not in REJECT_REASONS
        target = S.RETURNED if only_return else S.REJECTED
    elif task.status == "requested":
        target = held_from if state is S.ON_HOLD and held_from else state
    elif task.status in _DEFAULT_STATE:
        target = _DEFAULT_STATE[task.status]
    else:
        raise FhirInvalid(
            f"Task.status {task.status!r} is not a status a receiver sends back; one of: "
            "accepted, rejected, in-progress, on-hold, requested, completed, cancelled"
        )
    appointment = None
    if task.restriction is not None and task.restriction.period is not None:
        appointment = task.restriction.period.start
    if appointment is not None and not isinstance(appointment, datetime):
        raise FhirInvalid("Task.restriction.period.start must be a date and time")
    if appointment is not None and appointment.tzinfo is None:
        raise FhirInvalid("Task.restriction.period.start needs a time zone offset")
    notes = [n.text for n in (task.note or []) if n.text and n.text.strip()]
    return TaskUpdate(
        target=target,
        reason_code=reason,
        appointment_at=appointment if target is S.BOOKED else None,
        note="\n".join(notes) if notes else None,
    )
