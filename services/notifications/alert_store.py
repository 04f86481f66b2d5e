"""The coordinators' alert inbox: its queries, the coordinators' actions (one transaction each:
the row, its history, the AlertActionTaken event through the outbox, the audit entry), the
journey's alert events (the consumer's transaction) and the journey's plain-English
explanation, asked of the patient's PatientJourney workflow.

The rules (which action in which status, which filters) are in alerts.py; the routes in
api_alerts.py; the live stream in live.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import alerts
from services.notifications.alert_schemas import AlertOut, EvidenceOut, HistoryOut
from services.notifications.alerts import Action, AlertFilter, Kind, Severity, Sort, Status
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

COLUMNS = (
    "a.alert_id, a.patient_id, a.ics, a.kind, a.rule, a.severity, a.status, a.assignee, "
    "a.referral_ids, a.seq, a.raised_at, a.updated_at, a.acknowledged_at, "
    "a.snoozed_until, a.resolved_at, a.resolution, a.version"
)

_RANK = " ".join(f"WHEN '{sev.value}' THEN {rank}" for sev, rank in alerts.SEVERITY_RANK.items())
_ORDER = {
    Sort.AGE: "a.raised_at, a.alert_id",
    Sort.SEVERITY: f"CASE a.severity {_RANK} ELSE {len(alerts.SEVERITY_RANK)} END, "
    "a.raised_at, a.alert_id",
}


async def _exec(session: AsyncSession, sql: str, **params: Any) -> Any:
    return await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]


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
        allowed_actions=alerts.allowed_actions(row.status, row.severity),
    )


# --- reading ----------------------------------------------------------------------------------


def _where(f: AlertFilter) -> tuple[str, dict[str, Any]]:
    clauses = ["a.ics = :ics", "a.status = ANY(CAST(:statuses AS TEXT[]))"]
    params: dict[str, Any] = {"ics": f.ics, "statuses": sorted(s.value for s in f.statuses)}
    if f.kinds:
        clauses.append("a.kind = ANY(CAST(:kinds AS TEXT[]))")
        params["kinds"] = sorted(k.value for k in f.kinds)
    if f.severities:
        clauses.append("a.severity = ANY(CAST(:severities AS TEXT[]))")
        params["severities"] = sorted(s.value for s in f.severities)
    if f.unassigned:
        clauses.append("a.assignee IS NULL")
    if f.assignee is not None:
        clauses.append("a.assignee = :assignee")
        params["assignee"] = f.assignee
    if f.org is not None:
        # the alert's referrals, as the referral index knows them from their events
        clauses.append(
            "EXISTS (SELECT 1 FROM referral_index ri "
            "WHERE ri.referral_id = ANY(a.referral_ids) "
            "AND (ri.from_org = :org OR ri.to_org = :org))"
        )
        params["org"] = f.org
    if f.patient_id is not None:
        clauses.append("a.patient_id = :patient_id")
        params["patient_id"] = f.patient_id
    if f.raised_after is not None:
        clauses.append("a.raised_at >= :raised_after")
        params["raised_after"] = f.raised_after
    if f.raised_before is not None:
        clauses.append("a.raised_at < :raised_before")
        params["raised_before"] = f.raised_before
    return " AND ".join(clauses), params


async def list_alerts(
    session: AsyncSession, f: AlertFilter, *, sort: Sort, limit: int, offset: int
) -> tuple[list[Any], int]:
    where, params = _where(f)
    total = (
        (await _exec(session, f"SELECT count(*) AS n FROM alert a WHERE {where}", **params)).one().n
    )
    rows = (
        await _exec(
            session,
            f"SELECT {COLUMNS} FROM alert a WHERE {where} "
            f"ORDER BY {_ORDER[sort]} LIMIT :limit OFFSET :offset",
            limit=limit,
            offset=offset,
            **params,
        )
    ).all()
    return list(rows), int(total)


async def count_alerts(session: AsyncSession, f: AlertFilter) -> dict[str, Any]:
    where, params = _where(f)
    rows = (
        await _exec(
            session,
            f"""
        SELECT a.kind, a.severity, a.status, count(*) AS n FROM alert a WHERE {where}
        GROUP BY GROUPING SETS ((a.kind), (a.severity), (a.status), ())""",
            **params,
        )
    ).all()
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


async def get_alert(
    session: AsyncSession, alert_id: str, *, for_update: bool = False
) -> Any | None:
    lock = " FOR UPDATE" if for_update else ""
    return (
        await _exec(
            session, f"SELECT {COLUMNS} FROM alert a WHERE a.alert_id = :id{lock}", id=alert_id
        )
    ).first()


async def history(session: AsyncSession, alert_id: str) -> list[HistoryOut]:
    rows = (
        await _exec(
            session,
            """
        SELECT change, status, actor, assignee, detail, at, seq FROM alert_history
        WHERE alert_id = :id ORDER BY at, id""",
            id=alert_id,
        )
    ).all()
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
        for r in rows
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
    alerts.check_may_read(principal, settings.ics)
    row = await get_alert(session, alert_id, for_update=True)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    alerts.check_may_act(principal, row.ics)
    if if_match is not None and parse_etag(if_match) != row.version:
        raise PreconditionFailed(
            f"the alert has changed since you read it (it is at version "
            f"{row.version}); read it again and retry",
            current_version=row.version,
        )
    now = datetime.now(UTC)
    plan = alerts.plan_action(
        alerts.AlertSnapshot(
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
    updated = (
        await _exec(
            session,
            f"""
        UPDATE alert a SET status = :status, assignee = :assignee,
            acknowledged_at = :ack, snoozed_until = :snoozed, resolved_at = :resolved,
            resolution = :resolution, updated_at = :now, version = a.version + 1
        WHERE a.alert_id = :id RETURNING {COLUMNS}""",
            id=alert_id,
            status=plan.status,
            assignee=plan.assignee,
            ack=plan.acknowledged_at,
            snoozed=plan.snoozed_until,
            resolved=plan.resolved_at,
            resolution=plan.resolution,
            now=now,
        )
    ).one()
    await _exec(
        session,
        """
        INSERT INTO alert_history (alert_id, change, status, actor, assignee, detail, at)
        VALUES (:id, :change, :status, :actor, :assignee, :detail, :at)""",
        id=alert_id,
        change=plan.change,
        status=plan.status,
        actor=principal.identity,
        assignee=plan.assignee,
        detail=plan.detail,
        at=now,
    )
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

JOURNEY = "journey"


async def apply_journey_change(
    session: AsyncSession,
    *,
    alert_id: str,
    patient_id: str,
    ics: str,
    change: str,
    content: alerts.AlertContent,
    seq: int,
    at: datetime,
) -> None:
    """A journey alert event, in the consumer's transaction: a new alert, a change the
    coordinators have not seen (the row takes it, its version moves, its history gains a
    row), or the echo of a coordinator's action (it confirms their history row; the version
    they hold stays). Repeated and out-of-order events change nothing (highest `seq` wins)."""
    c = content
    inserted = (
        await _exec(
            session,
            """
        INSERT INTO alert (alert_id, patient_id, ics, kind, rule, severity, status, assignee,
                           referral_ids, seq, raised_at, updated_at, acknowledged_at,
                           resolved_at)
        VALUES (:aid, :pid, :ics, :kind, :rule, :sev, :status, :assignee, :refs, :seq,
                :at, :at, CASE WHEN :status = 'acknowledged' THEN CAST(:at AS TIMESTAMPTZ) END,
                CASE WHEN :status = 'resolved' THEN CAST(:at AS TIMESTAMPTZ) END)
        ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id""",
            aid=alert_id,
            pid=patient_id,
            ics=ics,
            kind=c.kind,
            rule=c.rule,
            sev=c.severity,
            status=c.status,
            assignee=c.assignee,
            refs=list(c.referral_ids),
            seq=seq,
            at=at,
        )
    ).first()
    if inserted is not None:
        await _journey_history(session, alert_id, change, c, seq, at)
        return
    row: Any = await get_alert(session, alert_id, for_update=True)  # it exists: not inserted
    # the echo of a coordinator's action: the journey's change of the same name, at the time
    # the coordinator acted (the action event's time, which the journey keeps), not yet
    # confirmed by an earlier delivery
    echoed = None
    if change in alerts.ECHOES:
        echoed = (
            await _exec(
                session,
                f"""
            SELECT h.id, EXISTS (SELECT 1 FROM alert_history later
                                 WHERE later.alert_id = h.alert_id AND later.id > h.id
                                   AND later.seq IS NULL
                                   AND later.actor IS DISTINCT FROM '{JOURNEY}') AS more
            FROM alert_history h
            WHERE h.alert_id = :aid AND h.change = :change AND h.at = :at AND h.seq IS NULL
              AND h.actor IS DISTINCT FROM '{JOURNEY}'
            ORDER BY h.id LIMIT 1""",
                aid=alert_id,
                change=change,
                at=at,
            )
        ).first()
    if echoed is not None:
        await _exec(
            session, "UPDATE alert_history SET seq = :seq WHERE id = :id", seq=seq, id=echoed.id
        )
    plan = alerts.reconcile(
        row=alerts.AlertContent(
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
        await _exec(
            session, "UPDATE alert SET seq = :seq WHERE alert_id = :aid", seq=seq, aid=alert_id
        )
    else:
        await _exec(
            session,
            """
            UPDATE alert SET kind = :kind, rule = :rule, severity = :sev, status = :status,
                assignee = :assignee, referral_ids = :refs, seq = :seq, updated_at = :at,
                acknowledged_at = COALESCE(acknowledged_at, CASE WHEN :status = 'acknowledged'
                                                   THEN CAST(:at AS TIMESTAMPTZ) END),
                resolved_at = CASE WHEN :status = 'resolved'
                                   THEN COALESCE(resolved_at, CAST(:at AS TIMESTAMPTZ)) END,
                snoozed_until = CASE WHEN :status = 'snoozed' THEN snoozed_until END,
                version = version + :bump
            WHERE alert_id = :aid""",
            aid=alert_id,
            kind=c.kind,
            rule=c.rule,
            sev=c.severity,
            status=c.status,
            assignee=c.assignee,
            refs=list(c.referral_ids),
            seq=seq,
            at=at,
            bump=1 if plan.new_version else 0,
        )
    if plan.history:
        await _journey_history(session, alert_id, change, c, seq, at)


async def _journey_history(
    session: AsyncSession,
    alert_id: str,
    change: str,
    content: alerts.AlertContent,
    seq: int,
    at: datetime,
) -> None:
    await _exec(
        session,
        f"""
        INSERT INTO alert_history (alert_id, change, status, actor, assignee, at, seq)
        VALUES (:aid, :change, :status, '{JOURNEY}', :assignee, :at, :seq)""",
        aid=alert_id,
        change=change,
        status=content.status,
        assignee=content.assignee,
        at=at,
        seq=seq,
    )


# --- the journey's explanation ----------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    explanation: str | None
    evidence: list[EvidenceOut] | None
    unavailable: str | None = None


class JourneyExplainer:
    """Asks the patient's PatientJourney workflow (a Temporal query) why it raised an alert:
    the journey owns the explanation. One client per API process, connected on first use;
    when Temporal can't answer, the caller gets the reason instead of the explanation."""

    CONNECT_TIMEOUT = 5.0
    QUERY_TIMEOUT = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        from temporalio.client import Client

        async with self._lock:
            if self._client is None:
                self._client = await asyncio.wait_for(
                    Client.connect(
                        self.settings.temporal_target, namespace=self.settings.temporal_namespace
                    ),
                    self.CONNECT_TIMEOUT,
                )
            return self._client

    async def query_journey(
        self, patient_id: str, *, context: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The patient's journey view (the `journey` query), or None and why not: a
        failure to reach Temporal is an answer for the caller to show, never a 500."""
        from temporalio.service import RPCError, RPCStatusCode

        from shared.identifiers import journey_workflow_id as workflow_id

        try:
            client = await self._connect()
        except Exception as exc:  # noqa: BLE001
            logger.warning("%s: cannot reach Temporal (%s)", context, type(exc).__name__)
            return None, "the journey service (Temporal) could not be reached; try again shortly"
        try:
            view = await asyncio.wait_for(
                client.get_workflow_handle(workflow_id(patient_id)).query(
                    "journey", rpc_timeout=timedelta(seconds=self.QUERY_TIMEOUT)
                ),
                self.QUERY_TIMEOUT + 2,
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None, "the patient's journey was not found"
            logger.warning("%s: journey query failed (%s)", context, exc.status)
            return None, "the patient's journey did not answer; try again shortly"
        except Exception as exc:  # noqa: BLE001 - timeouts, a failed or rejected query
            logger.warning("%s: journey query failed (%s)", context, type(exc).__name__)
            return None, "the patient's journey did not answer; try again shortly"
        return (view if isinstance(view, dict) else {}), None

    async def explain(self, *, patient_id: str, alert_id: str) -> Explanation:
        view, unavailable = await self.query_journey(patient_id, context=f"alert {alert_id}")
        if view is None:
            return Explanation(None, None, unavailable)
        found = next(
            (
                a
                for a in view.get("alerts", [])
                if isinstance(a, dict) and a.get("alert_id") == alert_id
            ),
            None,
        )
        if found is None:
            return Explanation(None, None, "the patient's journey has no record of this alert")
        evidence = [
            EvidenceOut(
                referral_id=e.get("referral_id"),
                at=str(e.get("at", "")),
                state=str(e.get("state", "")),
                detail=str(e.get("detail", "")),
            )
            for e in found.get("evidence") or []
            if isinstance(e, dict)
        ]
        return Explanation(found.get("explanation"), evidence)


def explainer_for(request: Any) -> JourneyExplainer:
    """The app's one JourneyExplainer (one Temporal client per API process), made on first
    use; the alert API and the dashboard share it."""
    state = request.app.state
    if getattr(state, "journey_explainer", None) is None:
        state.journey_explainer = JourneyExplainer(state.settings)
    explainer: JourneyExplainer = state.journey_explainer
    return explainer
