"""`waymark` and the local stack: idempotent start, real probes, status, tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shared import stack
from shared.auth import Role, verify_token
from shared.settings import settings_env


def _waymark(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True,
                          text=True, env=settings_env(settings), timeout=300)


class TestStack:
    async def test_up_again_reuses_the_running_infrastructure(self, infra):
        before = {r["part"]: r["pid"] for r in await stack.status(infra)}
        await stack.up(infra, infra_only=True)
        after = {r["part"]: r["pid"] for r in await stack.status(infra)}
        for part in ("postgres", "kafka", "temporal"):
            assert after[part] == before[part] != "-"

    async def test_the_probes_tell_a_live_part_from_a_dead_port(self, infra):
        assert await stack.pg_probe(infra)
        assert await stack.kafka_probe(infra)
        assert await stack.temporal_probe(infra)
        dead = infra.model_copy(update={"pg_port": 1, "kafka_port": 2, "temporal_port": 3})
        assert not await stack.pg_probe(dead)
        assert not await stack.kafka_probe(dead)
        assert not await stack.temporal_probe(dead)

    def test_kafka_runs_in_kraft_mode_on_loopback_without_auto_created_topics(self, infra):
        props = dict(line.split("=", 1) for line in
                     stack.kafka_properties(infra).splitlines() if "=" in line)
        assert props["process.roles"] == "broker,controller"
        assert props["auto.create.topics.enable"] == "false"
        assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:")
        assert str(infra.home) in props["log.dirs"]


class TestCli:
    def test_status_reports_every_part_with_its_health(self, running_apps):
        res = _waymark(running_apps, "status", "--json")
        rows = {r["part"]: r for r in json.loads(res.stdout)}
        assert {"postgres", "kafka", "temporal", "referrals-api", "referrals-relay",
                "journeys-worker", "journeys-bridge"} <= set(rows)
        assert all(r["healthy"] for r in rows.values()), rows
        assert res.returncode == 0
        assert rows["referrals-api"]["port"] == running_apps.api_port("referrals")

    def test_status_says_down_for_a_stopped_part_and_exits_non_zero(self, running_apps):
        part = stack.part_by_name("journeys-bridge")
        part.stop(running_apps)
        try:
            res = _waymark(running_apps, "status", "--json")
            rows = {r["part"]: r for r in json.loads(res.stdout)}
            assert rows["journeys-bridge"]["healthy"] is False
            assert res.returncode == 3
        finally:
            # bring it back for the rest of the session, as `waymark up` would
            res = _waymark(running_apps, "up")
        assert res.returncode == 0, res.stderr

    def test_token_mints_a_verifiable_token_with_roles_and_organisation(self, infra):
        res = _waymark(infra, "token", "--role", "coordinator", "--role", "clinician",
                       "--org", "ICS-1", "--sub", "u-42")
        assert res.returncode == 0, res.stderr
        p = verify_token(infra, res.stdout.strip())
        assert p.user == "u-42" and p.org == "ICS-1"
        assert p.roles == {Role.COORDINATOR, Role.CLINICIAN}

    def test_token_refuses_an_unknown_role(self, infra):
        res = _waymark(infra, "token", "--role", "superuser", "--org", "ICS-1")
        assert res.returncode == 2 and "superuser" in res.stderr

    def test_the_signing_key_is_private_to_its_owner(self, infra):
        mode = os.stat(infra.private_key_path()).st_mode & 0o777
        assert mode == 0o600

    def test_logs_shows_a_parts_log(self, running_apps):
        res = _waymark(running_apps, "logs", "journeys-bridge", "-n", "50")
        assert res.returncode == 0 and "bridge consuming" in res.stdout

    def test_schemas_check_passes_on_the_committed_schemas(self, infra):
        res = _waymark(infra, "schemas", "check")
        assert res.returncode == 0, res.stderr


class TestSeed:
    def test_seed_loads_the_demo_through_the_apis_and_a_second_seed_changes_nothing(
            self, running_apps):
        first = _waymark(running_apps, "seed")
        assert first.returncode == 0, first.stderr
        assert "85 directory services, 6 referrals and 2 care plans" in first.stdout
        assert "notification preferences of 4 demo referrers" in first.stdout
        second = _waymark(running_apps, "seed")
        assert second.returncode == 0, second.stderr
        assert second.stdout == first.stdout
