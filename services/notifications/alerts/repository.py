"""Every query of the coordinators' alert inbox: the `alert` rows (the journey's alerts as the
inbox knows them) and their `alert_history`, in the caller's session and transaction.

The rules are in domain.py; the use cases that call these in handlers.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts import domain
from services.notifications.alerts.domain import AlertContent, AlertFilter, Sort
from services.notifications.db import execute

COLUMNS = (
    "a.alert_id, a.patient_id, a.ics, a.kind, a.rule, a.severity, a.status, a.assignee, "
    "a.referral_ids, a.seq, a.raised_at, a.updated_at, a.acknowledged_at, "
    "a.snoozed_until, a.resolved_at, a.resolution, a.version"
)

_RANK = " ".join(f"WHEN '{sev.value}' THEN {rank}" for sev, rank in domain.SEVERITY_RANK.items())
_ORDER = {
    Sort.AGE: "a.raised_at, a.alert_id",
    Sort.SEVERITY: f"CASE a.severity {_RANK} ELSE {len(domain.SEVERITY_RANK)} END, "
    "a.raised_at, a.alert_id",
}

#: the actor of the journey's own changes in the history
JOURNEY = "journey"


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
        (await execute(session, f"SELECT count(*) AS n FROM alert a WHERE {where}", **params))
        .one()
        .n
    )
    rows = (
        await execute(
            session,
            f"SELECT {COLUMNS} FROM alert a WHERE {where} "
            f"ORDER BY {_ORDER[sort]} LIMIT :limit OFFSET :offset",
            limit=limit,
            offset=offset,
            **params,
        )
    ).all()
    return list(rows), int(total)


async def count_rows(session: AsyncSession, f: AlertFilter) -> list[Any]:
    """The filter's alerts counted by kind, by severity, by status and in all (one row each,
    the other columns null: GROUPING SETS)."""
    where, params = _where(f)
    return list(
        (
            await execute(
                session,
                f"""
        SELECT a.kind, a.severity, a.status, count(*) AS n FROM alert a WHERE {where}
        GROUP BY GROUPING SETS ((a.kind), (a.severity), (a.status), ())""",
                **params,
            )
        ).all()
    )


async def get_alert(
    session: AsyncSession, alert_id: str, *, for_update: bool = False
) -> Any | None:
    lock = " FOR UPDATE" if for_update else ""
    return (
        await execute(
            session, f"SELECT {COLUMNS} FROM alert a WHERE a.alert_id = :id{lock}", id=alert_id
        )
    ).first()


async def history_rows(session: AsyncSession, alert_id: str) -> list[Any]:
    return list(
        (
            await execute(
                session,
                """
        SELECT change, status, actor, assignee, detail, at, seq FROM alert_history
        WHERE alert_id = :id ORDER BY at, id""",
                id=alert_id,
            )
        ).all()
    )


# --- a coordinator's action -------------------------------------------------------------------


async def apply_action(
    session: AsyncSession, alert_id: str, plan: domain.ActionPlan, *, now: datetime
) -> Any:
    """The row after a coordinator's action; its version moves. Returns the updated row."""
    return (
        await execute(
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


async def add_action_history(
    session: AsyncSession, alert_id: str, plan: domain.ActionPlan, *, actor: str, at: datetime
) -> None:
    """A coordinator's action in the history (its `seq` stays null until the echo)."""
    await execute(
        session,
        """
        INSERT INTO alert_history (alert_id, change, status, actor, assignee, detail, at)
        VALUES (:id, :change, :status, :actor, :assignee, :detail, :at)""",
        id=alert_id,
        change=plan.change,
        status=plan.status,
        actor=actor,
        assignee=plan.assignee,
        detail=plan.detail,
        at=at,
    )


# --- the journey's alert events ---------------------------------------------------------------


async def insert_from_journey(
    session: AsyncSession,
    *,
    alert_id: str,
    patient_id: str,
    ics: str,
    content: AlertContent,
    seq: int,
    at: datetime,
) -> bool:
    """A new alert from a journey event; False when the inbox already has it."""
    c = content
    inserted = (
        await execute(
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
    return inserted is not None


async def unconfirmed_action(
    session: AsyncSession, alert_id: str, *, change: str, at: datetime
) -> Any | None:
    """The coordinator's history row a journey change of the same name at the same time
    echoes, not yet confirmed by an earlier delivery (`id`), and whether the coordinators
    have acted again since (`more`); None if there is none."""
    return (
        await execute(
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


async def confirm_action(session: AsyncSession, history_id: int, *, seq: int) -> None:
    """The journey's echo confirms a coordinator's history row."""
    await execute(
        session, "UPDATE alert_history SET seq = :seq WHERE id = :id", seq=seq, id=history_id
    )


async def advance_seq(session: AsyncSession, alert_id: str, *, seq: int) -> None:
    await execute(
        session, "UPDATE alert SET seq = :seq WHERE alert_id = :aid", seq=seq, aid=alert_id
    )


async def take_journey_content(
    session: AsyncSession,
    alert_id: str,
    *,
    content: AlertContent,
    seq: int,
    at: datetime,
    new_version: bool,
) -> None:
    """The row takes a journey event's content; its version moves only if it is news."""
    c = content
    await execute(
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
        bump=1 if new_version else 0,
    )


async def add_journey_history(
    session: AsyncSession,
    alert_id: str,
    *,
    change: str,
    content: AlertContent,
    seq: int,
    at: datetime,
) -> None:
    await execute(
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
