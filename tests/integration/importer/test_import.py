"""Imports on the real database: contacts through the integration service's own handler, one
outbox event per contact, a run record per file; a finished file run again and the same rows
in another file change nothing; a dry run writes nothing but its report."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from devtools.synthetic.extracts import GPAD_COLUMNS, gpad_rows, nhs_numbers, write_csv
from services.integration import repository
from services.integration.importer.domain import Kind
from services.integration.importer.runner import ImportRefused, Options, run_import
from services.integration.models import SourceSystem
from shared.settings import Settings
from tests.integration.conftest import NewSource
from tests.integration.importer.conftest import ecds_file, scalar


def opts(path: Path, source: SourceSystem, kind: Kind = Kind.ECDS, **kw: object) -> Options:
    return Options(path=path, kind=kind, source_id=source.id, progress="none", **kw)  # type: ignore[arg-type]


async def contacts(sessions: async_sessionmaker, source: SourceSystem) -> int:
    return int(
        await scalar(
            sessions, "SELECT count(*) FROM encounter WHERE source_system = :s", s=source.id
        )  # type: ignore[arg-type]
    )


async def events(sessions: async_sessionmaker, source: SourceSystem) -> int:
    return int(
        await scalar(  # type: ignore[arg-type]
            sessions,
            "SELECT count(*) FROM outbox WHERE payload->'data'->>'source_system' = :s",
            s=source.id,
        )
    )


def report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class TestImportingAnAEExtract:
    async def test_every_good_row_becomes_one_contact_and_one_event_and_bad_rows_are_reported(
        self, integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
    ) -> None:
        path = ecds_file(tmp_path, 60, seed=101, bad=(3, 40))
        summary = await run_import(infra, opts(path, bulk_source), sessions=integration_sessions)
        assert (summary.records, summary.accepted, summary.unchanged, summary.refused) == (
            60,
            58,
            0,
            2,
        )
        assert await contacts(integration_sessions, bulk_source) == 58
        assert await events(integration_sessions, bulk_source) == 58
        entries = report(summary.report)  # type: ignore[arg-type]
        assert [int(e["record"]) for e in entries] == list(range(1, 61))
        refused = [e for e in entries if e["outcome"] == "refused"]
        assert [int(e["line"]) for e in refused] == [5, 42]
        assert all("NHS number" in e["reason"] for e in refused)
        text = summary.report.read_text()  # type: ignore[union-attr]
        with path.open() as f:
            numbers = {row["nhs_number"] for row in csv.DictReader(f)}
        assert not any(n in text for n in numbers)
        async with integration_sessions() as session:
            [status] = [
                s for s in await repository.status_by_source(session) if s["id"] == bulk_source.id
            ]
        assert (status["received"], status["accepted"], status["refused"]) == (60, 58, 2)
        assert status["dead_letters"] == 2

    async def test_the_same_file_again_changes_nothing(
        self, integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
    ) -> None:
        path = ecds_file(tmp_path, 30, seed=102)
        await run_import(infra, opts(path, bulk_source), sessions=integration_sessions)
        again = await run_import(infra, opts(path, bulk_source), sessions=integration_sessions)
        assert again.already_finished and again.accepted == 30
        assert await contacts(integration_sessions, bulk_source) == 30
        assert await events(integration_sessions, bulk_source) == 30

    async def test_the_same_rows_in_another_file_are_unchanged_and_publish_nothing(
        self, integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
    ) -> None:
        path = ecds_file(tmp_path, 30, seed=103)
        await run_import(infra, opts(path, bulk_source), sessions=integration_sessions)
        copy = tmp_path / "ae-again.csv"
        copy.write_text(path.read_text() + "\n")  # other bytes, the same rows
        summary = await run_import(infra, opts(copy, bulk_source), sessions=integration_sessions)
        assert (summary.accepted, summary.unchanged, summary.refused) == (0, 30, 0)
        assert await events(integration_sessions, bulk_source) == 30

    async def test_a_dry_run_writes_its_report_and_nothing_else(
        self, integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
    ) -> None:
        path = ecds_file(tmp_path, 25, seed=104, bad=(0,))
        summary = await run_import(
            infra, opts(path, bulk_source, dry_run=True), sessions=integration_sessions
        )
        assert (summary.accepted, summary.refused) == (24, 1)
        assert [e["outcome"] for e in report(summary.report)][:2] == ["refused", "valid"]  # type: ignore[arg-type]
        assert await contacts(integration_sessions, bulk_source) == 0
        assert await events(integration_sessions, bulk_source) == 0
        runs = await scalar(
            integration_sessions,
            "SELECT count(*) FROM import_run WHERE source_system = :s",
            s=bulk_source.id,
        )
        logged = await scalar(
            integration_sessions,
            "SELECT count(*) FROM inbound_message WHERE source_system = :s",
            s=bulk_source.id,
        )
        assert (runs, logged) == (0, 0)

    async def test_an_unregistered_or_non_bulk_source_is_refused_before_any_row(
        self, integration_sessions, infra: Settings, new_source: NewSource, tmp_path: Path
    ) -> None:
        path = ecds_file(tmp_path, 5, seed=105)
        hl7 = await new_source(channel="hl7v2")
        off = await new_source(channel="bulk", active=False)
        for source in (hl7, off):
            with pytest.raises(ImportRefused, match="not an active bulk source"):
                await run_import(infra, opts(path, source), sessions=integration_sessions)
            assert await contacts(integration_sessions, source) == 0


class TestImportingGpAppointments:
    async def test_planned_reviews_are_planned_gp_contacts(
        self, integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
    ) -> None:
        numbers = nhs_numbers(40, first_body=random.Random(7).randrange(200000, 900000))
        rows = gpad_rows(numbers, seed=106, now=datetime.now(UTC), every=2)
        rows[0][6] = "Same Day"
        path = write_csv(tmp_path / "gp.csv", GPAD_COLUMNS, rows)
        summary = await run_import(
            infra, opts(path, bulk_source, Kind.GPAD), sessions=integration_sessions
        )
        assert summary.accepted == len(rows) and summary.refused == 0
        unplanned = await scalar(
            integration_sessions,
            "SELECT count(*) FROM encounter WHERE source_system = :s AND NOT planned "
            "AND contact_kind = 'gp_appointment'",
            s=bulk_source.id,
        )
        assert unplanned == 1


class TestStatus:
    async def test_integration_status_prints_an_imports_counts_from_the_api(
        self,
        integration_sessions,
        integration_client,
        infra: Settings,
        bulk_source: SourceSystem,
        tmp_path: Path,
        capsys,
    ) -> None:
        from devtools.integration_cli import admin_headers, print_status

        path = ecds_file(tmp_path, 12, seed=107, bad=(2,))
        await run_import(infra, opts(path, bulk_source), sessions=integration_sessions)
        resp = await integration_client.get("/status", headers=admin_headers(infra))
        assert resp.status_code == 200, resp.text
        print_status(resp.json())
        [line] = [
            ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(bulk_source.id)
        ]
        assert line.split()[1:8] == ["bulk", "RX1", "yes", "12", "11", "1", "1"]
