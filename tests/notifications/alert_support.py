"""What the alert inbox tests share: alerts put into the inbox through the consumer's own
handler (as the journeys topic would), referrals in the referral index, coordinators' tokens,
and a reader of Server-Sent Events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.notifications.effects import apply_event
from shared.auth import mint_token
from shared.db import unit_of_work
from shared.events.envelope import make_event
from shared.events.journeys import ALERT_EVENTS
from shared.events.referrals import ReferralAttended
from shared.settings import Settings


def new_patient() -> str:
    return f"pt_{uuid.uuid4().hex[:20]}"


def new_org(prefix: str = "ORG") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def coordinator(
    s: Settings,
    *,
    user: str | None = None,
    ics: str | None = None,
    role: str | list[str] = "coordinator",
    org: str = "ICB-TEST",
    name: str = "",
) -> dict[str, str]:
    roles = [role] if isinstance(role, str) else role
    tok = mint_token(
        s,
        sub=user or f"coord-{uuid.uuid4().hex[:6]}",
        roles=roles,
        org=org,
        ics=ics or s.ics,
        name=name,
    )
    return {"Authorization": f"Bearer {tok}"}


def alert_event(
    *,
    patient_id: str,
    alert_id: str | None = None,
    change: str = "raised",
    kind: str = "stalled",
    rule: str | None = None,
    severity: str = "medium",
    status: str = "open",
    referral_ids: list[str] | None = None,
    assignee: str | None = None,
    seq: int = 1,
    at: datetime | None = None,
) -> Any:
    """A journey alert event, as the journeys worker publishes it."""
    rule = (
        rule
        or {
            "stalled": "stalled.not_triaged",
            "looping": "looping.re_referral",
            "safety": "safety.phq9_item9",
            "pathway": "pathway.start_back_high",
        }[kind]
    )
    alert_id = alert_id or f"{patient_id}:{rule}:{uuid.uuid4().hex[:8]}"
    data = ALERT_EVENTS[change](
        alert_id=alert_id,
        kind=kind,
        rule=rule,  # type: ignore[arg-type]
        severity=severity,
        status=status,  # type: ignore[arg-type]
        referral_ids=referral_ids or [],
        assignee=assignee,
        seq=seq,
    )
    return make_event(data, subject=patient_id, time=at or datetime.now(UTC)), data


async def put_alert(s: Settings, sessions: async_sessionmaker, **kw: Any) -> str:
    """Put an alert into the inbox through the notifications consumer's handler."""
    event, data = alert_event(**kw)
    async with unit_of_work(sessions) as session:
        await apply_event(session=session, event=event, data=data, settings=s)
    return str(data.alert_id)


async def index_referral(
    s: Settings, sessions: async_sessionmaker, *, patient_id: str, from_org: str, to_org: str
) -> str:
    """A referral in the referral index, through the consumer's handler (an `attended` event
    owes nobody a message, so nothing else is queued)."""
    referral_id = str(uuid.uuid4())
    data = ReferralAttended(
        referral_id=referral_id,
        from_org=from_org,
        to_org=to_org,
        to_service_id="svc-test",
        service_category="msk_physiotherapy",
        priority="routine",
        state="attended",
    )
    async with unit_of_work(sessions) as session:
        await apply_event(
            session=session, event=make_event(data, subject=patient_id), data=data, settings=s
        )
    return referral_id


async def rows(sessions: async_sessionmaker, sql: str, **params: Any) -> list[Any]:
    async with sessions() as session:
        result = await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all())


@dataclass
class Sse:
    event: str | None = None
    id: str | None = None
    data: Any = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


async def sse_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """Parse a text/event-stream as a browser's EventSource would (comments kept too)."""
    current = Sse()
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines:
                current.data = json.loads("\n".join(data_lines))
            if data_lines or current.event or current.comments or current.retry is not None:
                yield current
            current, data_lines = Sse(), []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            current.comments.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "data":
            data_lines.append(value)
        elif name == "retry":
            current.retry = int(value)
