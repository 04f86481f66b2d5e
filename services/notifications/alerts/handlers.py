"""The coordinators' alert inbox, its use cases: the inbox's reads (the list, the counts, one
alert and its history), a coordinator's action (one transaction: the row, its history, the
AlertActionTaken event through the outbox, the audit entry) and a journey alert event (the
consumer's transaction). The API and the dashboard's pages both call these.

The rules (which action in which status, which filters) are in domain.py; the SQL in
repository.py; the routes in api.py; the live stream in live.py; the journey's plain-English
explanation in explainer.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts import domain, repository
from services.notifications.alerts.domain import Action, AlertFilter, Kind, Severity
from services.notifications.alerts.repository import get_alert, list_alerts
from services.notifications.alerts.schemas import HistoryOut, alert_out
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import NotFound, PreconditionFailed
from shared.events.envelope import make_event
from shared.events.notifications import AlertActionTaken
from shared.outbox import add_event
from shared.settings import Settings
from shared.topics import NOTIFICATIONS
from shared.web import parse_etag

logger = logging.getLogger(__name__)

#: the reads that are one query each, and the row as callers show it, for the API and the
#: dashboard's pages to find with the use cases
__all__ = [
    "alert_out",
    "apply_journey_change",
    "count_alerts",
    "get_alert",
    "history",
    "list_alerts",
    "take_action",
]


# --- reading ----------------------------------------------------------------------------------


async def count_alerts(session: AsyncSession, f: AlertFilter) -> dict[str, Any]:
    rows = await repository.count_rows(session, f)
    by_kind = {k.value: 0 for k in Kind}
    by_severity = {s.value: 0 for s in Severity}
    by_status = {s.value: 0 for s in sorted(f.statuses)}
    total = 0
    for r in rows:
        if r.kind is not None:
            by_kind[r.kind] = int(r.n)
        elif r.severity is not None:
            by_severity[r.severity] = int(r.n)
        elif r.status is not None:
            by_status[r.status] = int(r.n)
        else:
            total = int(r.n)
    return {"total": total, "by_kind": by_kind, "by_severity": by_severity, "by_status": by_status}


async def history(session: AsyncSession, alert_id: str) -> list[HistoryOut]:
    return [
        HistoryOut(
            change=r.change,
            status=r.status,
            actor=r.actor,
            assignee=r.assignee,
            detail=r.detail,
            at=r.at,
            seq=r.seq,
        )
        for r in await repository.history_rows(session, alert_id)
    ]


# --- acting -----------------------------------------------------------------------------------


async def take_action(
    *,
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    alert_id: str,
    action: Action,
    if_match: str | None = None,
    assignee: str | None = None,
    until: datetime | None = None,
    resolution: str | None = None,
    client_ip: str | None = None,
) -> Any:
    """A coordinator's action: the row at once, its history, the event for the journey and
    the audit entry, all in the caller's transaction. Returns the updated row."""
    domain.check_may_read(principal, settings.ics)
    row = await get_alert(session, alert_id, for_update=True)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    domain.check_may_act(principal, row.ics)
    if if_match is not None and parse_etag(if_match) != row.version:
        raise PreconditionFailed(
            f"the alert has changed since you read it (it is at version "
            f"{row.version}); read it again and retry",
            current_version=row.version,
        )
    now = datetime.now(UTC)
    plan = domain.plan_action(
        domain.AlertSnapshot(
            status=row.status,
            assignee=row.assignee,
            acknowledged_at=row.acknowledged_at,
            snoozed_until=row.snoozed_until,
            resolved_at=row.resolved_at,
            resolution=row.resolution,
            severity=row.severity,
        ),
        action,
        actor=principal.identity,
        now=now,
        assignee=assignee,
        until=until,
        resolution=resolution,
    )
    updated = await repository.apply_action(session, alert_id, plan, now=now)
    await repository.add_action_history(session, alert_id, plan, actor=principal.identity, at=now)
    # the journey hears it (the bridge signals the patient's PatientJourney `alert_action`);
    # codes and ids only, keyed by the patient so it stays in order with their other events
    event = make_event(
        AlertActionTaken(
            alert_id=alert_id,
            action=action.value,
            actor=principal.identity,
            assignee=plan.event_assignee,
            resolution=plan.event_resolution,
            snooze_until=plan.event_snooze_until,
        ),
        subject=row.patient_id,
        time=now,
    )
    add_event(session, topic=settings.topic(NOTIFICATIONS), event=event)
    record_audit(
        session,
        principal=principal,
        action=f"alert:{action.value}",
        resource_type="Alert",
        resource_id=alert_id,
        patient_id=row.patient_id,
        client_ip=client_ip,
        detail=f"{row.status} -> {plan.status}",
    )
    return updated


# --- the journey's alert events ---------------------------------------------------------------


async def apply_journey_change(
    session: AsyncSession,
    *,
    alert_id: str,
    patient_id: str,
    ics: str,
    change: str,
    content: domain.AlertContent,
    seq: int,
    at: datetime,
) -> None:
    """A journey alert event, in the consumer's transaction: a new alert, a change the
    coordinators have not seen (the row takes it, its version moves, its history gains a
    row), or the echo of a coordinator's action (it confirms their history row; the version
    they hold stays). Repeated and out-of-order events change nothing (highest `seq` wins)."""
    c = content
    if await repository.insert_from_journey(
        session, alert_id=alert_id, patient_id=patient_id, ics=ics, content=c, seq=seq, at=at
    ):
        await repository.add_journey_history(
            session, alert_id, change=change, content=c, seq=seq, at=at
        )
        return
    row: Any = await get_alert(session, alert_id, for_update=True)  # it exists: not inserted
    # the echo of a coordinator's action: the journey's change of the same name, at the time
    # the coordinator acted (the action event's time, which the journey keeps), not yet
    # confirmed by an earlier delivery
    echoed = None
    if change in domain.ECHOES:
        echoed = await repository.unconfirmed_action(session, alert_id, change=change, at=at)
    if echoed is not None:
        await repository.confirm_action(session, echoed.id, seq=seq)
    plan = domain.reconcile(
        row=domain.AlertContent(
            kind=row.kind,
            rule=row.rule,
            severity=row.severity,
            status=row.status,
            assignee=row.assignee,
            referral_ids=tuple(row.referral_ids or ()),
        ),
        row_seq=row.seq,
        event=c,
        seq=seq,
        echo=echoed is not None,
        later_actions_pending=bool(echoed is not None and echoed.more),
    )
    if plan is None:
        logger.info(
            "alert %s seq %d is not newer than the inbox's (%d); kept the inbox's",
            alert_id,
            seq,
            row.seq,
        )
        return
    if not plan.take_content:
        await repository.advance_seq(session, alert_id, seq=seq)
    else:
        await repository.take_journey_content(
            session, alert_id, content=c, seq=seq, at=at, new_version=plan.new_version
        )
    if plan.history:
        await repository.add_journey_history(
            session, alert_id, change=change, content=c, seq=seq, at=at
        )
