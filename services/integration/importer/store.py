"""The importer's queries: its runs (one per source and file SHA-256, how far each got), and the
message log entry of an e-RS referral row (the referrals service holds the referral; the log
lets `GET /status` count the row like any other message of the source)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import repository
from services.integration.applying import Incoming
from services.integration.domain import ContactReport, UnmappableReport
from services.integration.handlers import apply_messages
from services.integration.models import SourceSystem
from shared.db import unit_of_work
from shared.settings import Settings


@dataclass
class Run:
    source_system: str
    file_sha256: str
    kind: str
    file_name: str
    records_total: int | None
    records_done: int
    accepted: int
    unchanged: int
    refused: int
    last_line: int | None
    status: str
    runs: int


async def source(sessions: async_sessionmaker[AsyncSession], source_id: str) -> SourceSystem | None:
    async with sessions() as session:
        return await repository.source_by_id(session, source_id)


async def start_run(
    sessions: async_sessionmaker[AsyncSession],
    *,
    source_id: str,
    sha: str,
    kind: str,
    file_name: str,
    total: int,
) -> Run:
    """The run of this file: a new one, or the one a killed import left (counted again)."""
    async with unit_of_work(sessions) as session:
        await session.exec(  # type: ignore[call-overload]
            text(
                """INSERT INTO import_run (source_system, file_sha256, kind, file_name,
                                           records_total, runs)
                   VALUES (:s, :h, :k, :n, :t, 0)
                   ON CONFLICT (source_system, file_sha256) DO NOTHING"""
            ).bindparams(s=source_id, h=sha, k=kind, n=file_name, t=total)
        )
        row = (
            await session.exec(  # type: ignore[call-overload]
                text(
                    """UPDATE import_run
                          SET runs = runs + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
                              updated_at = now()
                        WHERE source_system = :s AND file_sha256 = :h
                    RETURNING source_system, file_sha256, kind, file_name, records_total,
                              records_done, accepted, unchanged, refused, last_line, status, runs"""
                ).bindparams(s=source_id, h=sha)
            )
        ).one()
    return Run(**row._mapping)


async def save_progress(
    sessions: async_sessionmaker[AsyncSession], run: Run, *, finished: bool = False
) -> None:
    async with unit_of_work(sessions) as session:
        await stage_progress(session, run, finished=finished)


async def stage_progress(session: AsyncSession, run: Run, *, finished: bool = False) -> None:
    """The run's progress, in the caller's transaction (a batch of records commits with it)."""
    await session.exec(  # type: ignore[call-overload]
        text(
            """UPDATE import_run
                  SET records_done = :d, accepted = :a, unchanged = :u, refused = :r,
                      last_line = :l, updated_at = now(),
                      status = CASE WHEN :f THEN 'finished' ELSE status END,
                      finished_at = CASE WHEN :f THEN now() ELSE finished_at END
                WHERE source_system = :s AND file_sha256 = :h"""
        ).bindparams(
            d=run.records_done,
            a=run.accepted,
            u=run.unchanged,
            r=run.refused,
            l=run.last_line,
            f=finished,
            s=run.source_system,
            h=run.file_sha256,
        )
    )


async def runs(sessions: async_sessionmaker[AsyncSession]) -> list[Run]:
    async with sessions() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            text(
                """SELECT source_system, file_sha256, kind, file_name, records_total,
                          records_done, accepted, unchanged, refused, last_line, status, runs
                     FROM import_run ORDER BY started_at"""
            )
        )
        return [Run(**r._mapping) for r in rows]


async def log_referral_row(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    source_id: str,
    control_id: str,
    payload: str,
    refused_because: str | None,
    now: datetime,
) -> None:
    """Record an e-RS row's outcome in the message log (and a refused one as a dead letter an
    operator can re-drive once the cause is fixed), through the path every message takes: the
    row's effect was the referrals service's, so it reports no contact."""

    def outcome(_source: SourceSystem) -> list[ContactReport]:
        if refused_because:
            raise UnmappableReport(refused_because)
        return []

    await apply_messages(
        sessions,
        settings,
        [
            Incoming(
                channel="bulk",
                control_id=control_id,
                payload=payload,
                reports=outcome,
                source_id=source_id,
                now=now,
            )
        ],
    )
