"""The coordinators' alert inbox rules: pure and synchronous, no I/O.

The journey (workflows/journeys/rules.py `apply_action`) owns each alert; the inbox applies a
coordinator's action to its row at once, so the dashboard answers without waiting for the round
trip, and publishes the action for the journey. So the inbox allows exactly what the journey
will apply, in the same statuses:

| action      | allowed in                                 | becomes                         |
|-------------|--------------------------------------------|---------------------------------|
| acknowledge | open, escalated, snoozed                   | acknowledged (assignee kept, or |
|             |                                            | the coordinator who acknowledged)|
| assign      | any status but resolved                    | same status, the new assignee   |
| snooze      | any status but resolved                    | snoozed until a future time     |
| resolve     | any status but resolved                    | resolved, with a coded reason   |

(`progressing` counts as "any status": the cause has gone, but a coordinator may still
acknowledge, assign, snooze or resolve it.) Resolved alerts take no actions. An urgent alert
(PHQ-9 item 9) is never snoozed: a snooze would keep it from escalating to the duty rota
(hazard log HAZ-047); it is acknowledged and acted on, or resolved.

The journey answers each action with its own alert event (a higher `seq`): the **echo**. The
echo confirms what the coordinator did; it is not news to them, so it moves neither the
version a coordinator's If-Match is checked against nor the history (`reconcile` below). Any
other journey change (raised, escalated, reopened, progressing, resolved by the journey) is
news: the row takes it, its version moves and its history gains a row. The highest `seq` wins.

Also here: the inbox's filters and sort orders, validated once for the list and the counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.access import Capability, Principal, may_use, roles_phrase
from shared.errors import Conflict, Forbidden, ValidationFailed
from shared.identifiers import ORG_CODE


class Kind(StrEnum):
    STALLED = "stalled"
    LOOPING = "looping"
    SAFETY = "safety"
    # a screening result whose matching pathway the person may not be on (e.g. STarT Back
    # high: physiotherapy with psychologically informed support)
    PATHWAY = "pathway"


class Severity(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    # the cause has gone (the person has since been accepted and seen): off the action
    # worklist, still visible until a coordinator resolves it
    PROGRESSING = "progressing"


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    SNOOZE = "snooze"
    RESOLVE = "resolve"


class Sort(StrEnum):
    AGE = "age"  # oldest first
    SEVERITY = "severity"  # urgent > high > medium, then oldest first


#: the order `sort=severity` lists alerts in
SEVERITY_RANK: dict[Severity, int] = {Severity.URGENT: 0, Severity.HIGH: 1, Severity.MEDIUM: 2}

#: the statuses each action may be taken in (mirrors the journey's `apply_action`)
ALLOWED_IN: dict[Action, frozenset[Status]] = {
    Action.ACKNOWLEDGE: frozenset(
        {Status.OPEN, Status.ESCALATED, Status.SNOOZED, Status.PROGRESSING}
    ),
    Action.ASSIGN: frozenset(set(Status) - {Status.RESOLVED}),
    Action.SNOOZE: frozenset(set(Status) - {Status.RESOLVED}),
    Action.RESOLVE: frozenset(set(Status) - {Status.RESOLVED}),
}

#: the change each action records (the journey's change names, past tense)
CHANGE_OF: dict[Action, str] = {
    Action.ACKNOWLEDGE: "acknowledged",
    Action.ASSIGN: "assigned",
    Action.SNOOZE: "snoozed",
    Action.RESOLVE: "resolved",
}

#: the statuses the inbox shows when the caller names none: the action worklist, everything
#: still to deal with (a progressing alert's cause has gone: it is asked for by name)
DEFAULT_STATUSES: frozenset[Status] = frozenset(set(Status) - {Status.RESOLVED, Status.PROGRESSING})

#: a snooze is a short "not now", not a way to hide an alert: at most this long
MAX_SNOOZE = timedelta(days=30)
#: a coded reason for closing an alert (as events carry it: never free text)
RESOLUTION_CODE = re.compile(r"^[a-z0-9-]{1,60}$")
#: a user id as tokens carry it (`sub`): printable, no spaces
USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
#: paging bounds of the list
MAX_LIMIT = 200
MAX_OFFSET = 100_000
MAX_AGE_DAYS = 3650

#: the journey's alert changes that answer a coordinator's action (their echo)
ECHOES: frozenset[str] = frozenset(CHANGE_OF.values())

ME = "me"
UNASSIGNED = "unassigned"


# --- who may see and act --------------------------------------------------------------------


def check_may_read(principal: Principal, ics: str) -> None:
    """Coordinators of the ICS this deployment serves see its inbox (the role table)."""
    if not may_use(principal, Capability.ALERT_READ):
        raise Forbidden(
            f"the alert inbox needs one of the roles: {roles_phrase(Capability.ALERT_READ)}"
        )
    if principal.ics != ics:
        raise Forbidden(
            f"the alert inbox shown here is {ics}'s; you belong to {principal.ics or 'no ICS'}"
        )


def check_may_act(principal: Principal, alert_ics: str) -> None:
    """Only a coordinator of the alert's ICS acts on it."""
    if not may_use(principal, Capability.ALERT_ACT):
        raise Forbidden(
            f"acting on alerts needs one of the roles: {roles_phrase(Capability.ALERT_ACT)}"
        )
    if principal.ics != alert_ics:
        raise Forbidden("this alert belongs to another ICS's coordinators")


# --- actions ----------------------------------------------------------------------------------

#: severities an alert may not be snoozed at: urgent alerts escalate within the hour
NEVER_SNOOZED = frozenset({"urgent"})


def allowed_actions(status: str, severity: str | None = None) -> list[Action]:
    """The actions an alert in `status` (of `severity`) takes, in a stable order."""
    try:
        st = Status(status)
    except ValueError:
        return []
    return [
        a
        for a in Action
        if st in ALLOWED_IN[a] and not (a is Action.SNOOZE and severity in NEVER_SNOOZED)
    ]


def check_action(status: str, action: Action, severity: str | None = None) -> None:
    """409 naming the allowed actions when `action` isn't allowed in `status`."""
    allowed = allowed_actions(status, severity)
    if action is Action.SNOOZE and severity in NEVER_SNOOZED and action in allowed_actions(status):
        raise Conflict(
            f"an {severity} alert cannot be snoozed: acknowledge it and act, or "
            f"resolve it; allowed: {', '.join(a.value for a in allowed)}",
            status_now=status,
            allowed_actions=[a.value for a in allowed],
        )
    if action in allowed:
        return
    if not allowed:
        raise Conflict(
            f"the alert is {status}: a {status} alert takes no actions",
            status_now=status,
            allowed_actions=[],
        )
    raise Conflict(
        f"cannot {action.value} an alert that is {status}; allowed: "
        f"{', '.join(a.value for a in allowed)}",
        status_now=status,
        allowed_actions=[a.value for a in allowed],
    )


@dataclass(frozen=True)
class AlertSnapshot:
    """What an action needs to know of the alert's row."""

    status: str
    assignee: str | None
    acknowledged_at: datetime | None
    snoozed_until: datetime | None
    resolved_at: datetime | None
    resolution: str | None
    severity: str | None = None


@dataclass(frozen=True)
class ActionPlan:
    """The row after the action, the history change, and what the event says."""

    change: str
    status: str
    assignee: str | None
    acknowledged_at: datetime | None
    snoozed_until: datetime | None
    resolved_at: datetime | None
    resolution: str | None
    detail: str | None
    # for the AlertActionTaken event
    event_assignee: str | None = None
    event_resolution: str | None = None
    event_snooze_until: datetime | None = None


def check_assignee(assignee: str, actor: str) -> str:
    """`me` is the caller; otherwise a user id as tokens carry it."""
    value = actor if assignee == ME else assignee
    if not USER_ID.fullmatch(value):
        raise ValidationFailed(
            "assignee must be a user id (letters, digits and . _ : @ -, at most 100) or 'me'"
        )
    return value


def check_snooze_until(until: datetime, now: datetime) -> datetime:
    if until.tzinfo is None or until.utcoffset() is None:
        raise ValidationFailed("until must carry a time zone offset, e.g. 2026-05-01T09:00:00Z")
    if until <= now:
        raise ValidationFailed("until must be in the future")
    if until - now > MAX_SNOOZE:
        raise ValidationFailed(f"an alert may be snoozed for at most {MAX_SNOOZE.days} days")
    return until


def check_resolution(resolution: str) -> str:
    if not RESOLUTION_CODE.fullmatch(resolution):
        raise ValidationFailed(
            "resolution must be a code: lower-case letters, digits and '-', "
            "1-60 characters (e.g. contacted-person)"
        )
    return resolution


def plan_action(
    alert: AlertSnapshot,
    action: Action,
    *,
    actor: str,
    now: datetime,
    assignee: str | None = None,
    until: datetime | None = None,
    resolution: str | None = None,
) -> ActionPlan:
    """What `action` does to the alert, as the journey's `apply_action` will do it."""
    check_action(alert.status, action, alert.severity)
    if action is Action.ACKNOWLEDGE:
        return ActionPlan(
            change=CHANGE_OF[action],
            status=Status.ACKNOWLEDGED.value,
            assignee=alert.assignee or actor,
            acknowledged_at=now,
            snoozed_until=None,
            resolved_at=None,
            resolution=None,
            detail=None,
        )
    if action is Action.ASSIGN:
        if assignee is None:
            raise ValidationFailed("assign needs an assignee")
        who = check_assignee(assignee, actor)
        return ActionPlan(
            change=CHANGE_OF[action],
            status=alert.status,
            assignee=who,
            acknowledged_at=alert.acknowledged_at,
            snoozed_until=alert.snoozed_until,
            resolved_at=None,
            resolution=None,
            detail=f"assigned to {who}",
            event_assignee=who,
        )
    if action is Action.SNOOZE:
        if until is None:
            raise ValidationFailed("snooze needs until")
        when = check_snooze_until(until, now)
        return ActionPlan(
            change=CHANGE_OF[action],
            status=Status.SNOOZED.value,
            assignee=alert.assignee,
            acknowledged_at=alert.acknowledged_at,
            snoozed_until=when,
            resolved_at=None,
            resolution=None,
            detail=f"until {when.isoformat()}",
            event_snooze_until=when,
        )
    if resolution is None:
        raise ValidationFailed("resolve needs a resolution code")
    code = check_resolution(resolution)
    return ActionPlan(
        change=CHANGE_OF[action],
        status=Status.RESOLVED.value,
        assignee=alert.assignee,
        acknowledged_at=alert.acknowledged_at,
        snoozed_until=None,
        resolved_at=now,
        resolution=code,
        detail=f"resolution {code}",
        event_resolution=code,
    )


# --- the journey's alert events ---------------------------------------------------------------


@dataclass(frozen=True)
class AlertContent:
    """What a coordinator is shown of an alert that the journey's events carry."""

    kind: str
    rule: str
    severity: str
    status: str
    assignee: str | None
    referral_ids: tuple[str, ...]


@dataclass(frozen=True)
class Reconciliation:
    """What one journey alert event does to the inbox's row (its `seq` always advances)."""

    take_content: bool  # the row takes the event's content
    new_version: bool  # news to a coordinator: the version (the ETag they hold) moves
    history: bool  # a history row of its own (an echo confirms the coordinator's row instead)


def reconcile(
    *,
    row: AlertContent,
    row_seq: int,
    event: AlertContent,
    seq: int,
    echo: bool,
    later_actions_pending: bool,
) -> Reconciliation | None:
    """What a journey alert event does to the inbox's row; None when it is not newer than the
    row (a repeated or out-of-order event: the highest `seq` wins).

    `echo`: the event is the journey applying a coordinator's action the inbox has already
    applied. Not news: the version stays. If the coordinator has acted again since (those
    actions' echoes are still to come), the row already shows where the journey is going and
    keeps its content; otherwise it takes the journey's, moving the version only if that
    differs from what the coordinator was shown (the journey changed the alert in between,
    e.g. escalated it before it heard of the action)."""
    if seq <= row_seq:
        return None
    if echo:
        if later_actions_pending or event == row:
            return Reconciliation(take_content=False, new_version=False, history=False)
        return Reconciliation(take_content=True, new_version=True, history=False)
    return Reconciliation(take_content=True, new_version=event != row, history=True)


# --- filters and sort -----------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts of an ICS a list, the counts or a stream asks for (all must hold)."""

    ics: str
    kinds: frozenset[Kind] = frozenset()  # empty: any
    severities: frozenset[Severity] = frozenset()
    statuses: frozenset[Status] = DEFAULT_STATUSES
    assignee: str | None = None  # a user id
    unassigned: bool = False
    org: str | None = None
    patient_id: str | None = None
    raised_after: datetime | None = None  # inclusive
    raised_before: datetime | None = None  # exclusive


def _members(values: Iterable[str] | None, enum: type[StrEnum], name: str) -> frozenset:  # type: ignore[type-arg]
    out = set()
    for v in values or ():
        try:
            out.add(enum(v))
        except ValueError:
            raise ValidationFailed(
                f"{name} must be one of {', '.join(e.value for e in enum)}; got {v!r}"
            ) from None
    return frozenset(out)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValidationFailed(f"{name} must carry a time zone offset, e.g. 2026-05-01T09:00:00Z")
    return value


def build_filter(
    *,
    ics: str,
    actor: str,
    now: datetime,
    kind: Iterable[str] | None = None,
    severity: Iterable[str] | None = None,
    status: Iterable[str] | None = None,
    assignee: str | None = None,
    org: str | None = None,
    patient_id: str | None = None,
    raised_after: datetime | None = None,
    raised_before: datetime | None = None,
    min_age_days: int | None = None,
) -> AlertFilter:
    """Validate what the caller asked for; `min_age_days` is an upper bound on `raised_at`
    (the stricter of it and `raised_before` applies)."""
    statuses = _members(status, Status, "status") or DEFAULT_STATUSES
    who: str | None = None
    unassigned = False
    if assignee is not None:
        if assignee == UNASSIGNED:
            unassigned = True
        else:
            who = check_assignee(assignee, actor)
    if org is not None and not ORG_CODE.fullmatch(org):
        raise ValidationFailed(
            "org must be an organisation code (letters, digits and '-', at most 20)"
        )
    if patient_id is not None and not re.fullmatch(r"[a-z0-9_]{1,80}", patient_id):
        raise ValidationFailed("patient_id must be a pseudonymous patient id")
    after = _aware(raised_after, "raised_after")
    before = _aware(raised_before, "raised_before")
    if min_age_days is not None:
        if not 0 <= min_age_days <= MAX_AGE_DAYS:
            raise ValidationFailed(f"min_age_days must be between 0 and {MAX_AGE_DAYS}")
        cutoff = now - timedelta(days=min_age_days)
        before = cutoff if before is None else min(before, cutoff)
    if after is not None and before is not None and after >= before:
        raise ValidationFailed(
            "nothing can be raised in that window: raised_after must be "
            "before raised_before (and the min_age_days cut-off)"
        )
    return AlertFilter(
        ics=ics,
        kinds=_members(kind, Kind, "kind"),
        severities=_members(severity, Severity, "severity"),
        statuses=statuses,
        assignee=who,
        unassigned=unassigned,
        org=org,
        patient_id=patient_id,
        raised_after=after,
        raised_before=before,
    )
