"""One record of an extract, applied: an A&E or GP record as a message of the integration
service's own path (`services/integration/applying.py`, channel `bulk`), an e-RS referral as a
request to the referrals service's historical import path; and what the report says of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.domain import ContactReport, UnmappableReport
from services.integration.handlers import Incoming, MessageResult, apply_message, digest
from services.integration.importer import store
from services.integration.importer.domain import (
    Kind,
    Record,
    RowRefused,
    contact,
    masked,
    referral_history,
)
from services.integration.importer.reader import Bad
from services.integration.importer.referrals import HistoryClient, Posted
from services.integration.models import SourceSystem
from shared.settings import Settings

Outcome = tuple[str, str | None]  # accepted | unchanged | refused (valid in a dry run), reason


def control_id(sha: str, item: Record | Bad) -> str:
    """The record's control id: the file (its SHA-256's first 16 hex digits) and the line."""
    return f"{sha[:16]}:{item.number}"


def payload_of(kind: Kind, item: Record | Bad) -> str:
    """The record as the message log keeps it (and a dead letter, for a re-drive)."""
    if isinstance(item, Bad):
        body: dict[str, Any] = {"kind": kind.value, "line": item.number, "error": item.error}
    else:
        body = {
            "kind": kind.value,
            "line": item.number,
            "fields": dict(item.fields),
            "steps": [dict(s) for s in item.steps],
        }
    return json.dumps(body, sort_keys=True, default=str)


def record_of(payload: str) -> tuple[Kind, Record | Bad]:
    body = json.loads(payload)
    if "error" in body:
        return Kind(body["kind"]), Bad(body["line"], body["error"])
    steps = tuple(body.get("steps") or ())
    return Kind(body["kind"]), Record(body["line"], body["fields"], steps)


def contact_reports(
    kind: Kind, item: Record | Bad, now: datetime
) -> Callable[[SourceSystem], list[ContactReport]]:
    """The `reports` callable of apply_message for one A&E or GP record."""

    def reports(source: SourceSystem) -> list[ContactReport]:
        if isinstance(item, Bad):
            raise UnmappableReport(item.error)
        try:
            return [contact(kind, item, now=now, default_org=source.org_code)]
        except RowRefused as exc:
            raise UnmappableReport(str(exc)) from None

    return reports


def incoming(
    kind: Kind, item: Record | Bad, *, source_id: str, sha: str, now: datetime
) -> Incoming:
    """An A&E or GP record as a message of the integration service's one path."""
    return Incoming(
        channel="bulk",
        control_id=control_id(sha, item),
        payload=payload_of(kind, item),
        reports=contact_reports(kind, item, now),
        source_id=source_id,
        now=now,
    )


def contact_outcome(result: MessageResult) -> Outcome:
    if result.ack_code != "AA":
        return "refused", masked(result.detail or "refused")
    if result.duplicate:
        return "accepted", "applied before (the same record of the same file)"
    return ("accepted", None) if result.changed else ("unchanged", "no new facts")


async def apply_contact(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    source_id: str,
    control_id: str,
    kind: Kind,
    item: Record | Bad,
    now: datetime,
) -> Outcome:
    """One record in its own transaction (a dead letter's re-drive)."""
    result = await apply_message(
        sessions,
        settings,
        source_id=source_id,
        channel="bulk",
        control_id=control_id,
        payload=payload_of(kind, item),
        reports=contact_reports(kind, item, now),
        now=now,
    )
    return contact_outcome(result)


async def apply_referral(
    sessions: async_sessionmaker[AsyncSession],
    client: HistoryClient,
    *,
    source_id: str,
    control_id: str,
    item: Record | Bad,
    now: datetime,
    service_map: Mapping[str, str],
) -> tuple[str, str | None]:
    payload = payload_of(Kind.ERS, item)
    async with sessions() as session:
        seen = await repository.message(session, source_id, control_id)
    if seen is not None and seen.outcome == "accepted" and seen.digest == digest(payload):
        return "accepted", "applied before (the same record of the same file)"
    try:
        if isinstance(item, Bad):
            raise RowRefused(item.error)
        body = referral_history(item, source_system=source_id, now=now, service_map=service_map)
    except RowRefused as exc:
        posted = Posted("refused", masked(str(exc)))
    else:
        posted = await client.post(body)
    reason = masked(posted.reason) if posted.reason else None
    await store.log_referral_row(
        sessions,
        client.settings,
        source_id=source_id,
        control_id=control_id,
        payload=payload,
        refused_because=reason if posted.outcome == "refused" else None,
        now=now,
    )
    return posted.outcome, reason


def dry_outcome(
    kind: Kind, item: Record | Bad, now: datetime, source_id: str, service_map: Mapping[str, str]
) -> tuple[str, str | None]:
    if isinstance(item, Bad):
        return "refused", item.error
    try:
        if kind is Kind.ERS:
            referral_history(item, source_system=source_id, now=now, service_map=service_map)
        else:
            # the source's own ODS code stands in for an empty provider/practice column
            contact(kind, item, now=now, default_org="SOURCE-ORG")
    except RowRefused as exc:
        return "refused", masked(str(exc))
    return "valid", None
