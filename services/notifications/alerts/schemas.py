"""Request and response bodies of the coordinators' alert inbox (api.py), and `alert_out`: an
`alert` row as the list, the detail and the live stream show it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.notifications.alerts import domain
from services.notifications.alerts.domain import Action, Kind, Severity, Status


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertOut(BaseModel):
    """An alert as the inbox lists it (and as the live stream pushes it). Codes and ids only:
    the person behind `patient_id` is looked up through the referrals or care plans API."""

    alert_id: str
    patient_id: str = Field(description="the person's pseudonymous id")
    ics: str
    kind: Kind
    rule: str = Field(description="the journey rule that raised it, e.g. safety.phq9_item9")
    severity: Severity
    status: Status
    assignee: str | None = Field(description="the user id of who is dealing with it")
    referral_ids: list[str]
    raised_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    snoozed_until: datetime | None
    resolved_at: datetime | None
    resolution: str | None = Field(description="the coded reason it was resolved")
    seq: int = Field(description="the journey's change number this row reflects")
    version: int = Field(
        description="the ETag: moves with every change a coordinator has not "
        "seen (the journey's confirmation of an action taken here "
        "leaves it)"
    )
    allowed_actions: list[Action] = Field(description="what a coordinator may do with it now")


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


class AlertCounts(BaseModel):
    total: int
    by_kind: dict[str, int]
    by_severity: dict[str, int]
    by_status: dict[str, int]


class HistoryOut(BaseModel):
    change: str = Field(
        description="raised, escalated, acknowledged, assigned, snoozed, "
        "reopened, progressing, resolved"
    )
    status: str
    actor: str | None = Field(
        description="'journey' for the journey's own changes, else the user id of the coordinator"
    )
    assignee: str | None
    detail: str | None
    at: datetime
    seq: int | None = Field(
        default=None,
        description=(
            "the journey's change number that recorded it; for a coordinator's action, that of the "
            "journey's confirmation (null until the journey has applied it)"
        ),
    )


class EvidenceOut(BaseModel):
    referral_id: str | None
    at: str
    state: str
    detail: str = ""


class AlertDetail(AlertOut):
    """One alert with its history, and the journey's plain-English explanation."""

    history: list[HistoryOut]
    explanation: str | None = Field(
        description="why the journey raised it, in plain words (from the patient's journey)"
    )
    evidence: list[EvidenceOut] | None
    explanation_unavailable: str | None = Field(
        default=None, description="set when the journey could not be asked: why"
    )


class AssignIn(Strict):
    assignee: str = Field(
        min_length=1, max_length=100, description="a user id, or 'me' for yourself"
    )


class SnoozeIn(Strict):
    until: AwareDatetime = Field(
        description="when the alert comes back (future, at most 30 days ahead)"
    )


class ResolveIn(Strict):
    resolution: str = Field(
        pattern=r"^[a-z0-9-]{1,60}$",
        description="a coded reason, e.g. contacted-person, referral-progressed, duplicate",
    )


def alert_out(row: Any) -> AlertOut:
    return AlertOut(
        alert_id=row.alert_id,
        patient_id=row.patient_id,
        ics=row.ics,
        kind=Kind(row.kind),
        rule=row.rule,
        severity=Severity(row.severity),
        status=Status(row.status),
        assignee=row.assignee,
        referral_ids=list(row.referral_ids or []),
        raised_at=row.raised_at,
        updated_at=row.updated_at,
        acknowledged_at=row.acknowledged_at,
        snoozed_until=row.snoozed_until,
        resolved_at=row.resolved_at,
        resolution=row.resolution,
        seq=row.seq,
        version=row.version,
        allowed_actions=domain.allowed_actions(row.status, row.severity),
    )
