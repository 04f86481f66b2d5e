"""One import of one extract file: every record, in file order, through the integration service's
own handler (A&E and GP contacts: `apply_message`, channel `bulk`, one message per record) or the
referrals service's historical import path (e-RS referrals), with a run record that makes the
import resumable and a per-record report.

- Idempotent per record: a record's control id is the file's SHA-256 (its first 16 hex digits)
  and the record's line, so applying it again is answered as a duplicate and changes nothing;
  the referrals service's path is idempotent by source system + UBRN.
- Resumable: the run (source, file SHA-256) records how many records are done; a killed import
  run again starts after them (the few records in flight when it was killed are applied again,
  and change nothing the second time). A finished file run again changes nothing.
- Dry run: parse, validate and map every record and write the report; no database, no request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.domain import ContactReport, UnmappableReport
from services.integration.handlers import apply_message, digest
from services.integration.importer import store
from services.integration.importer.domain import (
    Kind,
    Record,
    RowRefused,
    contact,
    masked,
    record_key,
    referral_history,
)
from services.integration.importer.pipeline import in_order
from services.integration.importer.reader import Bad, file_sha256, format_of, records, rows_in
from services.integration.importer.referrals import HistoryClient, Posted
from services.integration.importer.report import Progress, ReportWriter
from services.integration.models import SourceSystem
from shared.settings import Settings

logger = logging.getLogger(__name__)

#: progress is saved at least this often (records redone after a kill: at most this many)
SAVE_EVERY_RECORDS = 200
SAVE_EVERY_SECONDS = 1.0


class ImportRefused(Exception):
    """The import cannot start (an unknown or inactive source, a file of the wrong kind)."""


@dataclass(frozen=True)
class Options:
    path: Path
    kind: Kind
    source_id: str
    fmt: str | None = None
    report: Path | None = None
    dry_run: bool = False
    service_map: Mapping[str, str] = field(default_factory=dict)
    progress: str = "auto"  # auto (a bar on a terminal, lines otherwise), bar, lines, none
    #: records applied at once (records about the same contact or referral never overlap)
    workers: int = 8


@dataclass
class Summary:
    kind: str
    file_sha256: str
    records: int
    accepted: int = 0
    unchanged: int = 0
    refused: int = 0
    skipped: int = 0  # done by an earlier run of the same file
    seconds: float = 0.0
    already_finished: bool = False
    dry_run: bool = False
    report: Path | None = None

    @property
    def rate(self) -> float:
        handled = self.accepted + self.unchanged + self.refused
        return handled / self.seconds if self.seconds > 0 else 0.0


def default_report(path: Path) -> Path:
    return path.with_name(f"{path.stem}.report.csv")


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


async def apply_contact(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    source_id: str,
    control_id: str,
    kind: Kind,
    item: Record | Bad,
    now: datetime,
) -> tuple[str, str | None]:
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
    if result.ack_code != "AA":
        return "refused", masked(result.detail or "refused")
    if result.duplicate:
        return "accepted", "applied before this run (a resumed import)"
    return ("accepted", None) if result.changed else ("unchanged", "no new facts")


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
        return "accepted", "applied before this run (a resumed import)"
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


async def run_import(
    settings: Settings,
    opts: Options,
    *,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    client: HistoryClient | None = None,
) -> Summary:
    """Import one extract file (or, with `dry_run`, only check it). Raises ImportRefused, or
    ReferralsUnavailable (progress saved: run it again to resume)."""
    t0 = time.monotonic()
    fmt = format_of(opts.path, opts.fmt)
    sha = file_sha256(opts.path)
    total = rows_in(opts.path, opts.kind, fmt)
    summary = Summary(opts.kind.value, sha, total, dry_run=opts.dry_run)
    summary.report = opts.report or default_report(opts.path)
    now = datetime.now(UTC)
    if opts.dry_run:
        with ReportWriter(summary.report) as report, Progress(opts, total, 0) as bar:
            for position, item in enumerate(records(opts.path, opts.kind, fmt), start=1):
                outcome, reason = dry_outcome(
                    opts.kind, item, now, opts.source_id, opts.service_map
                )
                report.write(position, item.number, _key(opts.kind, item), outcome, reason)
                if outcome == "refused":
                    summary.refused += 1
                else:
                    summary.accepted += 1
                bar.step(summary)
        summary.seconds = time.monotonic() - t0
        return summary
    if sessions is None:
        raise ImportRefused("an import needs the integration database")
    source = await store.source(sessions, opts.source_id)
    if source is None or not source.active or source.channel != "bulk":
        raise ImportRefused(
            f"{opts.source_id!r} is not an active bulk source: register it first "
            "(PUT /sources/{id} with channel bulk)"
        )
    run = await store.start_run(
        sessions,
        source_id=source.id,
        sha=sha,
        kind=opts.kind.value,
        file_name=opts.path.name,
        total=total,
    )
    if run.kind != opts.kind.value:
        raise ImportRefused(f"this file was imported before as a {run.kind} extract")
    summary.skipped = run.records_done
    if run.status == "finished":
        summary.already_finished = True
        summary.accepted, summary.unchanged, summary.refused = (
            run.accepted,
            run.unchanged,
            run.refused,
        )
        summary.seconds = time.monotonic() - t0
        return summary
    own_client = client is None and opts.kind is Kind.ERS
    if own_client:
        client = HistoryClient(settings)
    counts = {"accepted": run.accepted, "unchanged": run.unchanged, "refused": run.refused}
    last_save, unsaved = time.monotonic(), 0

    async def apply(item: Record | Bad) -> tuple[str, str | None]:
        control_id = f"{sha[:16]}:{item.number}"
        if opts.kind is Kind.ERS:
            assert client is not None
            return await apply_referral(
                sessions,
                client,
                source_id=source.id,
                control_id=control_id,
                item=item,
                now=now,
                service_map=opts.service_map,
            )
        return await apply_contact(
            sessions,
            settings,
            source_id=source.id,
            control_id=control_id,
            kind=opts.kind,
            item=item,
            now=now,
        )

    todo = (
        (position, item)
        for position, item in enumerate(records(opts.path, opts.kind, fmt), start=1)
        if position > run.records_done
    )
    try:
        with (
            ReportWriter(summary.report, keep_records=run.records_done) as report,
            Progress(opts, total, run.records_done) as bar,
        ):
            async for position, item, (outcome, reason) in in_order(
                todo, apply, key=lambda i: _key(opts.kind, i) or str(i.number), workers=opts.workers
            ):
                counts[outcome] += 1
                summary.accepted += outcome == "accepted"
                summary.unchanged += outcome == "unchanged"
                summary.refused += outcome == "refused"
                report.write(position, item.number, _key(opts.kind, item), outcome, reason)
                run.records_done, run.last_line = position, item.number
                run.accepted, run.unchanged, run.refused = (
                    counts["accepted"],
                    counts["unchanged"],
                    counts["refused"],
                )
                unsaved += 1
                bar.step(summary)
                if (
                    unsaved >= SAVE_EVERY_RECORDS
                    or time.monotonic() - last_save > SAVE_EVERY_SECONDS
                ):
                    report.flush()
                    await store.save_progress(sessions, run)
                    last_save, unsaved = time.monotonic(), 0
            report.flush()
            await store.save_progress(sessions, run, finished=True)
    except BaseException:
        await store.save_progress(sessions, run)
        raise
    finally:
        if own_client and client is not None:
            await client.aclose()
    summary.seconds = time.monotonic() - t0
    return summary


def _key(kind: Kind, item: Record | Bad) -> str:
    return "" if isinstance(item, Bad) else record_key(kind, item)
