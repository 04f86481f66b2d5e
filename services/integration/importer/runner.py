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

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.applying import apply_in
from services.integration.importer import store
from services.integration.importer.domain import (
    Kind,
    Record,
    record_key,
)
from services.integration.importer.pipeline import in_order
from services.integration.importer.reader import Bad, file_sha256, format_of, records, rows_in
from services.integration.importer.records import (
    apply_referral,
    contact_outcome,
    control_id,
    dry_outcome,
    incoming,
)
from services.integration.importer.referrals import HistoryClient
from services.integration.importer.report import Progress, ReportWriter
from shared.db import unit_of_work
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
    #: e-RS referrals sent at once (one UBRN's never overlap)
    workers: int = 8
    #: A&E and GP records applied per transaction
    batch: int = 200


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
    todo = (
        (position, item)
        for position, item in enumerate(records(opts.path, opts.kind, fmt), start=1)
        if position > run.records_done
    )
    with (
        ReportWriter(summary.report, keep_records=run.records_done) as report,
        Progress(opts, total, run.records_done) as bar,
    ):
        tally = _Tally(opts.kind, run, summary, report, bar)
        if opts.kind is Kind.ERS:
            await _referrals(settings, opts, sessions, client, todo, tally, source.id, sha, now)
        else:
            await _contacts(settings, opts, sessions, todo, tally, source.id, sha, now)
        report.flush()
        await store.save_progress(sessions, run, finished=True)
    summary.seconds = time.monotonic() - t0
    return summary


class _Tally:
    """What the run, the summary, the report and the progress display learn of each record."""

    def __init__(
        self, kind: Kind, run: store.Run, summary: Summary, report: ReportWriter, bar: Progress
    ) -> None:
        self.kind, self.run, self.summary, self.report, self.bar = kind, run, summary, report, bar

    def note(self, position: int, item: Record | Bad, outcome: str, reason: str | None) -> None:
        for target in (self.run, self.summary):
            setattr(target, outcome, getattr(target, outcome) + 1)
        self.report.write(position, item.number, _key(self.kind, item), outcome, reason)
        self.run.records_done, self.run.last_line = position, item.number
        self.bar.step(self.summary)


async def _contacts(
    settings: Settings,
    opts: Options,
    sessions: async_sessionmaker[AsyncSession],
    todo: Iterator[tuple[int, Record | Bad]],
    tally: _Tally,
    source_id: str,
    sha: str,
    now: datetime,
) -> None:
    """A&E and GP records, a batch per transaction: the contacts, their events, the message
    log, the dead letters and the run's progress commit together, so a killed import resumes
    exactly after the last batch committed. The batch's report lines are written before its
    commit (a resumed import drops those of a batch that never committed)."""

    async def commit(batch: list[tuple[int, Record | Bad]]) -> None:
        async with unit_of_work(sessions) as session:
            items = [
                incoming(opts.kind, i, source_id=source_id, sha=sha, now=now) for _, i in batch
            ]
            results = await apply_in(await repository.driver_of(session), settings, items)
            for (position, item), result in zip(batch, results, strict=True):
                tally.note(position, item, *contact_outcome(result))
            tally.report.flush()
            await store.stage_progress(session, tally.run)

    batch: list[tuple[int, Record | Bad]] = []
    for entry in todo:
        batch.append(entry)
        if len(batch) >= opts.batch:
            await commit(batch)
            batch = []
    if batch:
        await commit(batch)


async def _referrals(
    settings: Settings,
    opts: Options,
    sessions: async_sessionmaker[AsyncSession],
    client: HistoryClient | None,
    todo: Iterator[tuple[int, Record | Bad]],
    tally: _Tally,
    source_id: str,
    sha: str,
    now: datetime,
) -> None:
    """e-RS referrals, several requests at once (one UBRN's never), results in file order; the
    run's progress saved every SAVE_EVERY_RECORDS records or SAVE_EVERY_SECONDS, and when the
    import stops (the requests in flight then are sent again on resume: the referrals service
    answers them unchanged)."""
    own = client is None
    http = client or HistoryClient(settings)

    async def apply(item: Record | Bad) -> tuple[str, str | None]:
        return await apply_referral(
            sessions,
            http,
            source_id=source_id,
            control_id=control_id(sha, item),
            item=item,
            now=now,
            service_map=opts.service_map,
        )

    last_save, unsaved = time.monotonic(), 0
    try:
        async for position, item, (outcome, reason) in in_order(
            todo, apply, key=lambda i: _key(Kind.ERS, i) or str(i.number), workers=opts.workers
        ):
            tally.note(position, item, outcome, reason)
            unsaved += 1
            if unsaved >= SAVE_EVERY_RECORDS or time.monotonic() - last_save > SAVE_EVERY_SECONDS:
                tally.report.flush()
                await store.save_progress(sessions, tally.run)
                last_save, unsaved = time.monotonic(), 0
    except BaseException:
        tally.report.flush()
        await store.save_progress(sessions, tally.run)
        raise
    finally:
        if own:
            await http.aclose()


def _key(kind: Kind, item: Record | Bad) -> str:
    return "" if isinstance(item, Bad) else record_key(kind, item)
