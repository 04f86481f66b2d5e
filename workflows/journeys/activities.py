"""Activities of the journey workflows: load the rules, and persist + publish alert changes.

`record_alert_change` is idempotent: the change row (alert id, seq) has a primary key, the
outbox event id is derived from it, and the read model keeps the highest seq, so a retried or
repeated activity writes nothing twice and never moves an alert backwards.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from shared.db import unit_of_work
from shared.events.envelope import make_event
from shared.events.journeys import ALERT_EVENTS
from shared.outbox import add_event
from shared.settings import Settings
from shared.topics import JOURNEYS
from workflows.journeys.rules import Rules, load_rules
from workflows.journeys.state import AlertChange, ts

RULES_ENV = "WAYMARK_JOURNEY_RULES"
EVENT_NAMESPACE = uuid.UUID("6f1c3b7e-2a4d-4e8f-9a51-0c2d7e3b9f10")


def rules_from_environment() -> Rules:
    """rules.toml, or the files WAYMARK_JOURNEY_RULES lists (separated by ':'; a later file
    overrides an earlier one key by key)."""
    paths = os.environ.get(RULES_ENV, "").split(os.pathsep)
    return load_rules(*(Path(p) for p in paths if p)) if any(paths) else load_rules()


class JourneyActivities:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        rules: Rules | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.rules = rules or rules_from_environment()

    @activity.defn(name="load_journey_rules")
    async def load_journey_rules(self) -> Rules:
        return self.rules

    @activity.defn(name="record_alert_change")
    async def record_alert_change(self, change: AlertChange) -> bool:
        """Persist the alert and publish the change; False if it was already recorded."""
        a = change.alert
        async with unit_of_work(self.sessions) as session:
            first = (
                await session.exec(
                    text(  # type: ignore[call-overload]
                        "INSERT INTO journey_alert_change (alert_id, seq, change, status, at) "
                        "VALUES (:id, :seq, :change, :status, :at) ON CONFLICT DO NOTHING "
                        "RETURNING alert_id"
                    ).bindparams(
                        id=a.alert_id,
                        seq=a.seq,
                        change=change.change,
                        status=a.status,
                        at=ts(change.at),
                    )
                )
            ).first()
            await session.exec(
                text(  # type: ignore[call-overload]
                    """
                    INSERT INTO journey_alert (alert_id, patient_id, kind, rule, severity, status,
                     explanation, evidence, referral_id, assignee, raised_at, acknowledged_at,
                     escalated_at, resolved_at, resolution, snoozed_until, seq, updated_at)
                   VALUES (:id, :patient, :kind, :rule, :severity, :status, :explanation,
                     CAST(:evidence AS JSONB), :referral, :assignee, :raised, :ack, :esc, :res,
                     :resolution, :snoozed, :seq, now())
                   ON CONFLICT (alert_id) DO UPDATE SET status = EXCLUDED.status,
                     severity = EXCLUDED.severity, explanation = EXCLUDED.explanation,
                     evidence = EXCLUDED.evidence, assignee = EXCLUDED.assignee,
                     raised_at = EXCLUDED.raised_at, acknowledged_at = EXCLUDED.acknowledged_at,
                     escalated_at = EXCLUDED.escalated_at, resolved_at = EXCLUDED.resolved_at,
                     resolution = EXCLUDED.resolution, snoozed_until = EXCLUDED.snoozed_until,
                     seq = EXCLUDED.seq, updated_at = now()
                   WHERE journey_alert.seq < EXCLUDED.seq"""
                ).bindparams(
                    id=a.alert_id,
                    patient=change.patient_id,
                    kind=a.kind,
                    rule=a.rule,
                    severity=a.severity,
                    status=a.status,
                    explanation=a.explanation,
                    evidence=json.dumps([asdict(e) for e in a.evidence]),
                    referral=a.referral_id,
                    assignee=a.assignee,
                    raised=ts(a.raised_at),
                    ack=ts(a.acknowledged_at) if a.acknowledged_at else None,
                    esc=ts(a.escalated_at) if a.escalated_at else None,
                    res=ts(a.resolved_at) if a.resolved_at else None,
                    resolution=a.resolution,
                    snoozed=ts(a.snoozed_until) if a.snoozed_until else None,
                    seq=a.seq,
                )
            )
            if first is None:
                return False
            model = ALERT_EVENTS[change.change]
            referral_ids = sorted({e.referral_id for e in a.evidence if e.referral_id})
            event = make_event(
                model(
                    alert_id=a.alert_id,
                    kind=a.kind,
                    rule=a.rule,  # type: ignore[arg-type]
                    severity=a.severity,
                    status=a.status,  # type: ignore[arg-type]
                    referral_ids=referral_ids,
                    assignee=a.assignee,
                    seq=a.seq,
                    recipient_orgs=list(a.recipient_orgs),
                ),
                subject=change.patient_id,
                time=ts(change.at),
                event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"{a.alert_id}#{a.seq}")),
            )
            add_event(session, topic=self.settings.topic(JOURNEYS), event=event)
            return True
