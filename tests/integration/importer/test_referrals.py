"""e-RS referrals imported through the referrals service's historical import path (its real app
on the real database, called over HTTP with the integration service's service token): every
referral exists with its real past dates and every step; the same rows again change nothing; a
contradicting history is refused with the service's reason; the service away stops the import,
which resumes when it is back."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.synthetic import DEMO_MIX, generate
from devtools.synthetic.extracts import ERS_COLUMNS, ers_rows, nhs_numbers, write_csv
from services.integration.importer.domain import Kind
from services.integration.importer.referrals import HistoryClient, ReferralsUnavailable
from services.integration.importer.runner import Options, run_import
from services.integration.models import SourceSystem
from shared.settings import Settings
from tests.conftest import KNOWN_SERVICES
from tests.integration.importer.conftest import scalar


def ers_file(tmp_path: Path, people: int, seed: int) -> tuple[Path, list[list[str]]]:
    journeys = generate(people, seed=seed, now=datetime.now(UTC), months=12, mix=DEMO_MIX)
    numbers = nhs_numbers(people, first_body=random.Random(seed).randrange(100000, 900000))
    rows = ers_rows(journeys, numbers, known_services={s[0] for s in KNOWN_SERVICES})
    return write_csv(tmp_path / f"ers-{seed}.csv", ERS_COLUMNS, rows), rows


def opts(path: Path, source: SourceSystem) -> Options:
    return Options(path=path, kind=Kind.ERS, source_id=source.id, progress="none", workers=4)


async def test_worklist_referrals_exist_with_their_real_dates_and_every_step(
    integration_sessions,
    referrals_sessions,
    referrals_client: httpx.AsyncClient,
    infra: Settings,
    bulk_source: SourceSystem,
    tmp_path: Path,
) -> None:
    path, rows = ers_file(tmp_path, 40, seed=random.randrange(10**6))
    client = HistoryClient(infra, http=referrals_client)
    summary = await run_import(
        infra, opts(path, bulk_source), sessions=integration_sessions, client=client
    )
    ubrns: dict[str, list[list[str]]] = {}
    for r in rows:
        ubrns.setdefault(r[0], []).append(r)
    assert (summary.records, summary.accepted, summary.refused) == (len(ubrns), len(ubrns), 0)
    for ubrn, steps in list(ubrns.items())[:15]:
        assert await client.stored_steps(bulk_source.id, ubrn) == len(steps)
    async with referrals_sessions() as session:
        held = (
            await session.exec(  # type: ignore[call-overload]
                text(
                    "SELECT source_ref, state, submitted_at FROM referral WHERE source_system = :s"
                ).bindparams(s=bulk_source.id)
            )
        ).all()
    assert {h.source_ref for h in held} == set(ubrns)
    for h in held:
        first, last = ubrns[h.source_ref][0], ubrns[h.source_ref][-1]
        assert h.submitted_at == datetime.fromisoformat(first[10])
        assert h.state == {"sent": "submitted", "dna": "did_not_attend"}.get(last[9], last[9])

    again = tmp_path / "ers-again.csv"
    again.write_text(path.read_text() + "\n")
    second = await run_import(
        infra, opts(again, bulk_source), sessions=integration_sessions, client=client
    )
    assert (second.accepted, second.unchanged, second.refused) == (0, len(ubrns), 0)


async def test_a_contradicting_history_is_refused_with_the_services_reason(
    integration_sessions,
    referrals_client,
    infra: Settings,
    bulk_source: SourceSystem,
    tmp_path: Path,
) -> None:
    path, rows = ers_file(tmp_path, 5, seed=random.randrange(10**6))
    client = HistoryClient(infra, http=referrals_client)
    await run_import(infra, opts(path, bulk_source), sessions=integration_sessions, client=client)
    first_ubrn = rows[0][0]
    changed = [list(r) for r in rows if r[0] == first_ubrn]
    changed[0][4] = "YOGA-1"  # another receiving organisation for the same UBRN
    other = write_csv(tmp_path / "ers-changed.csv", ERS_COLUMNS, changed)
    summary = await run_import(
        infra, opts(other, bulk_source), sessions=integration_sessions, client=client
    )
    assert summary.refused == 1
    with summary.report.open(newline="") as f:  # type: ignore[union-attr]
        [entry] = list(csv.DictReader(f))
    assert entry["outcome"] == "refused" and "referrals service" in entry["reason"]
    assert rows[0][1] not in summary.report.read_text()  # type: ignore[union-attr]
    letters = await scalar(
        integration_sessions,
        "SELECT count(*) FROM dead_letter WHERE source_system = :s AND status = 'open'",
        s=bulk_source.id,
    )
    assert letters == 1


async def test_the_referrals_service_away_stops_the_import_and_it_resumes(
    integration_sessions,
    referrals_client,
    infra: Settings,
    bulk_source: SourceSystem,
    tmp_path: Path,
) -> None:
    path, rows = ers_file(tmp_path, 6, seed=random.randrange(10**6))
    away = HistoryClient(infra, http=httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2))
    with pytest.raises(ReferralsUnavailable):
        await run_import(infra, opts(path, bulk_source), sessions=integration_sessions, client=away)
    done = await scalar(
        integration_sessions,
        "SELECT records_done FROM import_run WHERE source_system = :s",
        s=bulk_source.id,
    )
    assert done == 0
    client = HistoryClient(infra, http=referrals_client)
    summary = await run_import(
        infra, opts(path, bulk_source), sessions=integration_sessions, client=client
    )
    assert summary.accepted == len({r[0] for r in rows}) and summary.refused == 0
