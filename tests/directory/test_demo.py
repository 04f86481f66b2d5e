"""`seed_directory` against the directory served by uvicorn as `waymark up` will run it:
at least 80 published services over every category, the services the referrals demo names,
and seeding twice changes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.directory.demo import seed_directory
from services.directory.domain import Category
from shared.settings import Settings, settings_env
from tests.directory.conftest import query
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "svc-pain-mgmt-programme": ("PAIN-RTH", "pain_management_programme"),
    "svc-pain-clinic": ("PAIN-RTH", "pain_management_programme"),
    "svc-talking-therapies-ltc": ("TT-TALK1", "talking_therapies_ltc"),
    "svc-msk-physio": ("PHYSIO-1", "msk_physiotherapy"),
    "svc-social-prescribing": ("SP-LINK1", "social_prescribing"),
}


async def _directory_answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/health")
            return r.status_code == 200 and r.json().get("service") == "directory"
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
async def directory_server(infra: Settings) -> AsyncIterator[Settings]:
    """The directory API on its port: the one `waymark up` started for this instance if it
    is running, else one started here with uvicorn exactly as the stack runs it."""
    port = infra.api_port("directory")
    if await _directory_answers(port):
        yield infra
        return
    log = infra.logs_dir / f"directory-test-{infra.instance}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "services.directory.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=settings_env(infra),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        async def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"directory API exited: {log.read_text()[-2000:]}")
            return await _directory_answers(port)

        await eventually(healthy, timeout=30)
        yield infra
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class TestSeed:
    async def test_the_demo_directory_is_seeded_once(
        self, directory_server: Settings, directory_sessions: async_sessionmaker
    ) -> None:
        ids = await asyncio.to_thread(seed_directory, directory_server)
        assert len(ids) >= 80 and len(set(ids)) == len(ids)
        rows = await query(
            directory_sessions,
            "SELECT id, org_code, category, lifecycle, "
            "remote, self_referral, waiting_weeks, version FROM service "
            "WHERE id = ANY(CAST(:ids AS TEXT[]))",
            ids=ids,
        )
        assert len(rows) == len(ids)
        assert {r.lifecycle for r in rows} == {"published"}
        assert {r.category for r in rows} == {c.value for c in Category}
        by_id = {r.id: r for r in rows}
        for sid, (org, category) in EXPECTED.items():
            assert (by_id[sid].org_code, by_id[sid].category) == (org, category)
        assert sum(r.self_referral for r in rows) >= 10
        assert sum(1 for r in rows if r.waiting_weeks) >= 10
        online = await query(
            directory_sessions,
            "SELECT s.id FROM service s WHERE s.id = "
            "ANY(CAST(:ids AS TEXT[])) AND NOT EXISTS (SELECT 1 FROM "
            "service_at_location l WHERE l.service_id = s.id)",
            ids=ids,
        )
        assert len(online) >= 5
        events = await query(
            directory_sessions,
            "SELECT count(*) AS n FROM outbox WHERE key = ANY(CAST(:ids AS TEXT[]))",
            ids=ids,
        )

        again = await asyncio.to_thread(seed_directory, directory_server)
        assert again == ids
        after = await query(
            directory_sessions,
            "SELECT id, version FROM service WHERE id = ANY(CAST(:ids AS TEXT[]))",
            ids=ids,
        )
        assert {(r.id, r.version) for r in after} == {(r.id, r.version) for r in rows}
        assert (
            await query(
                directory_sessions,
                "SELECT count(*) AS n FROM outbox WHERE key = ANY(CAST(:ids AS TEXT[]))",
                ids=ids,
            )
            == events
        )
