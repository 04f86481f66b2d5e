"""The importer killed mid-file (kill -9, as a separate process) and run again: it resumes after
the records it had done, and every contact exists once with one event, as if it had never been
stopped; the report has one entry per record."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.integration.models import SourceSystem
from shared.settings import Settings
from tests.integration.importer.conftest import ecds_file, scalar

ROOT = Path(__file__).resolve().parents[3]
ROWS = 3000


def importer(path: Path, source: SourceSystem) -> list[str]:
    return [
        sys.executable,
        "-m",
        "services.integration.importer",
        "ecds",
        str(path),
        "--source",
        source.id,
        "--progress",
        "lines",
        "--batch",
        "50",
    ]


async def test_an_import_killed_mid_file_resumes_without_duplicates(
    integration_sessions, infra: Settings, bulk_source: SourceSystem, tmp_path: Path
) -> None:
    path = ecds_file(tmp_path, ROWS, seed=201, bad=(10, 2900))
    done_sql = "SELECT coalesce(max(records_done), 0) FROM import_run WHERE source_system = :s"
    first = subprocess.Popen(
        importer(path, bulk_source), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while int(await scalar(integration_sessions, done_sql, s=bulk_source.id)) < 200:  # type: ignore[arg-type]
        assert first.poll() is None, first.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the importer never got going"
        await asyncio.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = int(await scalar(integration_sessions, done_sql, s=bulk_source.id))  # type: ignore[arg-type]
    assert 200 <= killed_at < ROWS, "killed mid-file"

    again = subprocess.run(
        importer(path, bulk_source), cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resumed after {killed_at} done before" in again.stdout

    good = ROWS - 2
    contacts = await scalar(
        integration_sessions,
        "SELECT count(*) FROM encounter WHERE source_system = :s AND revision = 1",
        s=bulk_source.id,
    )
    all_contacts = await scalar(
        integration_sessions,
        "SELECT count(*) FROM encounter WHERE source_system = :s",
        s=bulk_source.id,
    )
    events = await scalar(
        integration_sessions,
        "SELECT count(*) FROM outbox WHERE payload->'data'->>'source_system' = :s",
        s=bulk_source.id,
    )
    distinct = await scalar(
        integration_sessions,
        "SELECT count(DISTINCT payload->'data'->>'encounter_id') FROM outbox "
        "WHERE payload->'data'->>'source_system' = :s",
        s=bulk_source.id,
    )
    assert (contacts, all_contacts, events, distinct) == (good, good, good, good)
    with path.open(newline="") as f:
        ids = {row["attendance_id"] for row in csv.DictReader(f)}
    refs = await scalar(
        integration_sessions,
        "SELECT count(*) FROM encounter WHERE source_system = :s AND source_ref = ANY(:ids)",
        s=bulk_source.id,
        ids=list(ids),
    )
    assert refs == good
    logged = await scalar(
        integration_sessions,
        "SELECT count(*) FROM inbound_message WHERE source_system = :s",
        s=bulk_source.id,
    )
    assert logged == ROWS
    run = await scalar(
        integration_sessions,
        "SELECT row_to_json(r)::text FROM import_run r WHERE source_system = :s",
        s=bulk_source.id,
    )
    assert '"status":"finished"' in run and f'"records_done":{ROWS}' in run  # type: ignore[operator]
    assert f'"accepted":{good}' in run and '"refused":2' in run  # type: ignore[operator]
    with path.with_name(f"{path.stem}.report.csv").open(newline="") as f:
        entries = list(csv.DictReader(f))
    assert [int(e["record"]) for e in entries] == list(range(1, ROWS + 1))
    assert sum(e["outcome"] == "refused" for e in entries) == 2
