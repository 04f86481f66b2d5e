"""`waymark` and the local stack: idempotent start, real probes, status, tokens."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from devtools import stack
from devtools.demo import POPULATION_MONTHS, POPULATION_PREFIX
from devtools.population import GP_PRACTICE, population_nhs_numbers
from devtools.synthetic import DEMO_MIX, generate
from devtools.synthetic.extracts import gpad_rows
from shared.auth import Role, verify_token
from shared.db import make_engine, make_sessionmaker
from shared.kafka_security import client_options
from shared.pseudonym import pseudonymise
from shared.settings import settings_env
from shared.temporal_client import connect as connect_temporal
from shared.topics import REFERRALS
from tests.cloudevents_support import Findings, read_since, reused_ids
from tests.helpers import end_offsets, eventually, instance_topics
from workflows.journeys import workflow_id
from workflows.journeys.workflows import PatientJourney


def _waymark(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", *args],
        capture_output=True,
        text=True,
        env=settings_env(settings),
        timeout=300,
    )


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

    def test_kafka_runs_in_kraft_mode_on_loopback_with_sasl_and_acls(self, infra):
        text = stack.kafka_properties(infra, "broker-secret")
        props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        assert props["process.roles"] == "broker,controller"
        assert props["auto.create.topics.enable"] == "false"
        # no listener without authentication, all on loopback
        assert props["listeners"] == (
            f"SASL_PLAINTEXT://127.0.0.1:{infra.kafka_port},"
            f"CONTROLLER://127.0.0.1:{infra.kafka_controller_port}"
        )
        protocols = dict(m.split(":") for m in props["listener.security.protocol.map"].split(","))
        assert set(protocols.values()) == {"SASL_PLAINTEXT"}
        assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
        assert props["authorizer.class.name"].endswith("StandardAuthorizer")
        assert props["allow.everyone.if.no.acl.found"] == "false"
        assert props["super.users"] == "User:waymark-admin;User:waymark-broker"
        assert str(infra.home) in props["log.dirs"]
        # the broker's config holds its password: readable by its owner only
        assert (infra.home / "kafka" / "server.properties").stat().st_mode & 0o077 == 0


class TestCli:
    def test_status_reports_every_part_with_its_health(self, running_apps):
        res = _waymark(running_apps, "status", "--json")
        rows = {r["part"]: r for r in json.loads(res.stdout)}
        assert {
            "postgres",
            "kafka",
            "temporal",
            "referrals-api",
            "referrals-relay",
            "journeys-worker",
            "journeys-bridge",
        } <= set(rows)
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
        res = _waymark(
            infra,
            "token",
            "--role",
            "coordinator",
            "--role",
            "clinician",
            "--org",
            "ICS-1",
            "--sub",
            "u-42",
        )
        assert res.returncode == 0, res.stderr
        p = asyncio.run(verify_token(infra, res.stdout.strip()))
        assert p.user == "u-42" and p.org == "ICS-1"
        assert p.roles == {Role.COORDINATOR, Role.CLINICIAN}

    def test_token_refuses_an_unknown_role(self, infra):
        res = _waymark(infra, "token", "--role", "superuser", "--org", "ICS-1")
        assert res.returncode == 2 and "superuser" in res.stderr

    def test_the_signing_key_is_private_to_its_owner(self, infra):
        mode = os.stat(infra.local_idp_dir / "jwks.json").st_mode & 0o777
        assert mode == 0o600

    def test_logs_shows_a_parts_log(self, running_apps):
        res = _waymark(running_apps, "logs", "journeys-bridge", "-n", "50")
        assert res.returncode == 0 and "bridge consuming" in res.stdout

    def test_schemas_check_passes_on_the_committed_schemas(self, infra):
        res = _waymark(infra, "schemas", "check")
        assert res.returncode == 0, res.stderr


class TestSeed:
    """`waymark seed` with a small population (the default is 500 people; 60 keep this quick)
    of its own (a fresh seed: the Temporal namespace outlives the test database, so the demo's
    own journeys may already exist from an earlier run). The population is loaded through the
    bulk importer: every referral is held by the referrals service, and every alert opens onto
    referrals it holds."""

    PEOPLE = 60

    async def test_seed_loads_the_demo_and_a_population_that_raises_its_alerts_once(
        self, running_apps
    ):
        s = running_apps
        population_seed = random.randrange(10**6, 10**7)
        args = ("seed", "--people", str(self.PEOPLE), "--population-seed", str(population_seed))
        journeys = generate(
            self.PEOPLE,
            seed=population_seed,
            now=datetime.now(UTC),
            patient_prefix=POPULATION_PREFIX,
            months=POPULATION_MONTHS,
            mix=DEMO_MIX,
        )
        # the person behind each journey, as the referrals service names them
        numbers = population_nhs_numbers(self.PEOPLE, seed=population_seed)
        person = {j.patient_id: pseudonymise(n, s) for j, n in zip(journeys, numbers, strict=True)}
        people = list(person.values())
        # the planned GP reviews the seed imports reach the journeys too (contact events)
        reviews = Counter(
            row[1]
            for row in gpad_rows(
                numbers, seed=population_seed, now=datetime.now(UTC), practice=GP_PRACTICE
            )
        )
        applied = {
            j.patient_id: len(j.events) + reviews[n] for j, n in zip(journeys, numbers, strict=True)
        }
        labelled = {(person[j.patient_id], r) for j in journeys for r in j.expected_rules}
        # the ambiguous templates' alerts depend on when events reach the journey
        # (bench/alert_quality.py measures them apart): the clear-cut ones are exact
        clear = {person[j.patient_id] for j in journeys if j.clear_cut}
        expected = {(p, r) for p, r in labelled if p in clear}
        assert {r.split(".")[0] for _, r in expected} == {"looping", "stalled"}
        referrals = {e.referral_id for j in journeys for e in j.events}

        began_ms = int(time.time() * 1000) - 1000
        first = await asyncio.to_thread(_waymark, s, *args)
        assert first.returncode == 0, first.stderr
        assert "85 directory services, 6 referrals and 2 care plans" in first.stdout
        assert "notification preferences of 4 demo referrers" in first.stdout
        events = sum(len(j.events) for j in journeys)
        assert (
            f"synthetic population: {self.PEOPLE} people over 12 months: {len(referrals)} "
            f"referrals ({events} dated steps) from an e-RS worklist extract"
        ) in first.stdout
        assert "held by the referrals service with its real past dates" in first.stdout
        loops = sum(1 for _, r in labelled if r.startswith("looping."))
        assert f"raise {loops} loop and {len(labelled) - loops} stall alerts" in first.stdout
        assert (
            f"dashboard: http://127.0.0.1:{s.api_port('notifications')}/dashboard/login"
            in first.stdout
        )

        engine = make_engine(s, "notifications")
        sessions = make_sessionmaker(engine)
        ref_engine = make_engine(s, "referrals")
        ref_sessions = make_sessionmaker(ref_engine)

        async def inbox() -> set[tuple[str, str]]:
            async with sessions() as session:
                rows = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT patient_id, rule FROM alert WHERE patient_id = ANY(:p)"
                        ).bindparams(p=people)
                    )
                ).all()
            return {(r.patient_id, r.rule) for r in rows if r.patient_id in clear}

        async def counts() -> tuple[int, int, int]:
            async with sessions() as session:
                row = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            """
                            SELECT
                              (SELECT count(*) FROM alert WHERE patient_id = ANY(:p)) AS alerts,
                              (SELECT count(*) FROM referral_history
                                WHERE patient_id = ANY(:p)) AS history,
                              (SELECT count(*) FROM message WHERE patient_id = ANY(:p)
                                AND audience NOT IN ('alert_orgs', 'duty_rota')) AS messages
                    """
                        ).bindparams(p=people)
                    )
                ).one()
            return row.alerts, row.history, row.messages

        async def held() -> tuple[set[str], int]:
            """The population's referrals the referrals service holds, and its outbox rows."""
            async with ref_sessions() as session:
                ids = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT id FROM referral WHERE patient_id = ANY(:p)"
                        ).bindparams(p=people)
                    )
                ).all()
                outbox = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT count(*) FROM outbox WHERE key = ANY(:p)"
                        ).bindparams(p=people)
                    )
                ).scalar_one()
            return {str(r.id) for r in ids}, outbox

        client = await connect_temporal(s)

        async def journeys_saw_everything() -> bool:
            views = await asyncio.gather(
                *(
                    client.get_workflow_handle(workflow_id(person[j.patient_id])).query(
                        PatientJourney.journey
                    )
                    for j in journeys
                ),
                return_exceptions=True,
            )
            return all(
                not isinstance(v, BaseException) and v.events_applied == applied[j.patient_id]
                for v, j in zip(views, journeys, strict=True)
            )

        async def journeys_behind() -> list[tuple[str, object, int]]:
            views = await asyncio.gather(
                *(
                    client.get_workflow_handle(workflow_id(person[j.patient_id])).query(
                        PatientJourney.journey
                    )
                    for j in journeys
                ),
                return_exceptions=True,
            )
            return [
                (j.template, getattr(v, "events_applied", v), applied[j.patient_id])
                for v, j in zip(views, journeys, strict=True)
                if isinstance(v, BaseException) or v.events_applied != applied[j.patient_id]
            ]

        try:
            held_ids, outbox = await held()
            assert len(held_ids) == len(referrals) and outbox == events
            # loops at once, stalls once each journey's events have settled (60 s)
            try:
                await eventually(lambda: _contains(inbox(), expected), timeout=240, interval=2)
            except AssertionError:
                got = await inbox()
                behind = await journeys_behind()
                raise AssertionError(
                    f"{len(expected - got)} alerts missing, e.g. {sorted(expected - got)[:5]}; "
                    f"{len(got - expected)} unexpected, e.g. {sorted(got - expected)[:5]}; "
                    f"journeys that have not applied every event: {behind[:5]} ({len(behind)})"
                ) from None
            assert await inbox() == expected
            before = await counts()
            # nobody is messaged about the referrals themselves (an alert addressed to a
            # referrer's team, e.g. no next step, reaches that team's inbox)
            assert before[0] >= len(expected) and before[1:] == (events, 0)
            # every alert names referrals the referrals service holds (it opens onto them)
            async with sessions() as session:
                named = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT DISTINCT unnest(referral_ids) AS r FROM alert "
                            "WHERE patient_id = ANY(:p)"
                        ).bindparams(p=people)
                    )
                ).all()
            assert named and {r.r for r in named} <= held_ids

            second = await asyncio.to_thread(_waymark, s, *args)
            assert second.returncode == 0, second.stderr
            assert second.stdout == first.stdout
            # seeding again imports nothing: no referral, no event, no alert twice
            assert await held() == (held_ids, outbox)
            await eventually(journeys_saw_everything, timeout=60, interval=1)
            await eventually(
                lambda: _caught_up(s, s.topic("notifications"), s.topic(REFERRALS)),
                timeout=60,
                interval=1,
            )
            assert await inbox() == expected
            assert await counts() == before  # nothing twice
            # on Kafka too: every message since the first seed is a CloudEvent a consumer's
            # SDK reads (structured mode, the binding's headers), and no source + id pair was
            # published again with other content (times, appointment times)
            found = Findings()
            topics = [t for t in await instance_topics(s) if not t.startswith(s.topic("it-"))]
            for topic in topics:
                await read_since(s, topic, began_ms, found)
            assert found.read[s.topic(REFERRALS)] >= events
            assert dict(found.problems) == {}
            assert reused_ids(found) == {}
        finally:
            await engine.dispose()
            await ref_engine.dispose()


async def _contains(found: Awaitable[set[tuple[str, str]]], expected: set[tuple[str, str]]) -> bool:
    return expected <= await found


async def _caught_up(s, group: str, topic: str) -> bool:  # type: ignore[no-untyped-def]
    """The consumer group has committed everything on the topic."""
    ends = await end_offsets(s, topic)
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= end for tp, end in ends.items())
