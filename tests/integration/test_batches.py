"""A batch of messages on the real database (services/integration/applying.py with the
staging module's one write statement): each message decided in order, as if alone, and what
the batch writes is what the messages one by one would have written."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.integration import repository
from services.integration.applying import apply_in
from services.integration.group_commit import GroupCommit
from services.integration.handlers import Incoming, apply_messages
from services.integration.models import SourceSystem
from shared.db import connect, make_engine, make_sessionmaker, unit_of_work
from shared.pseudonym import pseudonymise, pseudonymiser
from shared.settings import Settings
from shared.vocabulary import ContactStatus
from tests.helpers import synthetic_nhs_number
from tests.integration.conftest import NewSource
from tests.integration.test_handlers import a_report, rows


def incoming(source: SourceSystem, control_id: str, *reports, payload: str | None = None):  # type: ignore[no-untyped-def]
    return Incoming(
        channel=source.channel,  # type: ignore[arg-type]
        control_id=control_id,
        payload=payload or f"message {control_id}",
        reports=lambda _source: list(reports),
        source_id=source.id,
    )


class TestABatchOfMessages:
    async def test_each_message_is_decided_in_order_and_written_as_alone(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        nhs = synthetic_nhs_number()
        visit = f"V{uuid.uuid4().hex[:8]}"
        arrived = a_report(visit, nhs_number=nhs, diagnosis_codes=("279039007", "161891005"))
        left = replace(
            arrived,
            status=ContactStatus.FINISHED,
            ended_at=arrived.started_at + timedelta(hours=1),
            diagnosis_codes=(),
        )
        results = await apply_messages(
            integration_sessions,
            infra,
            [
                incoming(source, "C1", arrived),
                incoming(source, "C2", left),
                incoming(source, "C1", arrived),  # resent: the same message again
                incoming(source, "C1", left, payload="other content"),  # a reused control id
                incoming(source, "C3", replace(arrived, nhs_number="123")),  # unmappable
            ],
        )
        assert [(r.ack_code, r.duplicate) for r in results] == [
            ("AA", False),
            ("AA", False),
            ("AA", True),
            ("AR", False),
            ("AE", False),
        ]
        [(encounter_id, revision)] = results[0].changed
        assert revision == 1
        assert results[1].changed == [(encounter_id, 2)]
        [contact] = await rows(
            integration_sessions,
            "SELECT * FROM encounter WHERE id = CAST(:id AS uuid)",
            id=encounter_id,
        )
        assert (contact.revision, contact.status, contact.patient_id) == (
            2,
            "finished",
            pseudonymise(nhs, infra),
        )
        # what the discharge leaves out is kept from the arrival
        assert contact.diagnosis_codes == ["279039007", "161891005"]
        assert contact.ended_at == left.ended_at
        events = await rows(
            integration_sessions,
            "SELECT payload FROM outbox WHERE payload->'data'->>'encounter_id' = :id ORDER BY seq",
            id=encounter_id,
        )
        assert [(e.payload["data"]["revision"], e.payload["data"]["status"]) for e in events] == [
            (1, "arrived"),
            (2, "finished"),
        ]
        audit = await rows(
            integration_sessions,
            "SELECT actor, action, detail FROM audit_log WHERE resource_id = :id ORDER BY detail",
            id=encounter_id,
        )
        assert [(a.actor, a.action, a.detail) for a in audit] == [
            (f"source:{source.id}", "contact-recorded", "hl7v2 revision 1"),
            (f"source:{source.id}", "contact-recorded", "hl7v2 revision 2"),
        ]
        logged = await rows(
            integration_sessions,
            "SELECT control_id, outcome, ack_code FROM inbound_message WHERE source_system = :s "
            "ORDER BY control_id",
            s=source.id,
        )
        assert [(m.control_id, m.outcome, m.ack_code) for m in logged] == [
            ("C1", "accepted", "AA"),
            ("C2", "accepted", "AA"),
            ("C3", "refused", "AE"),
        ]
        letters = await rows(
            integration_sessions,
            "SELECT control_id FROM dead_letter WHERE source_system = :s ORDER BY control_id",
            s=source.id,
        )
        assert [d.control_id for d in letters] == ["C1", "C3"]

    async def test_a_control_id_refused_before_and_sent_again_is_its_second_outcome(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        report = a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
        [refused] = await apply_messages(
            integration_sessions, infra, [incoming(source, "C1", replace(report, nhs_number="1"))]
        )
        [accepted] = await apply_messages(
            integration_sessions, infra, [incoming(source, "C1", report)]
        )
        assert (refused.ack_code, accepted.ack_code) == ("AE", "AA")
        [logged] = await rows(
            integration_sessions,
            "SELECT outcome, ack_code, detail FROM inbound_message WHERE source_system = :s",
            s=source.id,
        )
        assert (logged.outcome, logged.ack_code, logged.detail) == ("accepted", "AA", None)
        [letter] = await rows(
            integration_sessions,
            "SELECT status, resolved_by FROM dead_letter WHERE source_system = :s",
            s=source.id,
        )
        assert (letter.status, letter.resolved_by) == ("redriven", "resent")


class TestTwoDeliveriesAtOnce:
    async def test_a_resend_waits_for_the_first_delivery_and_then_sees_it(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        """A sender resends (a lost ACK) while its first delivery is still being applied on
        another connection: the resend waits for that commit, then sees the message logged and
        is a duplicate, in a batch with a new message that is applied as usual."""
        source = await new_source()
        first = a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
        other = a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
        applied = asyncio.Event()
        release = asyncio.Event()

        async def first_delivery() -> list:  # type: ignore[type-arg]
            async with unit_of_work(integration_sessions) as session:
                # in a unit of work, as the importer applies a batch beside its ORM writes
                db = await repository.driver_of(session)
                results = await apply_in(db, infra, [incoming(source, "C1", first)])
                applied.set()
                await release.wait()  # still uncommitted, its control id locked
            return results

        one = asyncio.create_task(first_delivery())
        await applied.wait()
        resend = asyncio.create_task(
            apply_messages(
                integration_sessions,
                infra,
                [incoming(source, "C1", first), incoming(source, "C2", other)],
            )
        )
        await asyncio.sleep(0.5)
        assert not resend.done(), "the resend did not wait for the first delivery's commit"
        release.set()
        [(a,), (dup, new)] = [await one, await resend]
        assert (a.ack_code, a.duplicate, bool(a.changed)) == ("AA", False, True)
        assert (dup.ack_code, dup.duplicate, dup.changed) == ("AA", True, [])
        assert (new.ack_code, new.duplicate, bool(new.changed)) == ("AA", False, True)
        contacts = await rows(
            integration_sessions,
            "SELECT source_ref FROM encounter WHERE source_system = :s ORDER BY source_ref",
            s=source.id,
        )
        refs = sorted(c.source_ref for c in contacts)
        assert refs == sorted([first.source_ref, other.source_ref])
        [events] = await rows(
            integration_sessions,
            "SELECT count(*) AS n FROM outbox WHERE key IN "
            "(SELECT patient_id FROM encounter WHERE source_system = :s)",
            s=source.id,
        )
        assert events.n == 2


class TestGroupCommit:
    async def test_messages_sent_together_are_each_answered_and_applied_once(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        group = GroupCommit(integration_sessions, infra)
        reports = [
            a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
            for _ in range(30)
        ]
        try:
            results = await asyncio.gather(
                *(group.apply(incoming(source, f"C{i}", r)) for i, r in enumerate(reports)),
                # the first ten again, on other "connections": answered, applied once
                *(group.apply(incoming(source, f"C{i}", r)) for i, r in enumerate(reports[:10])),
            )
        finally:
            await group.close()
        assert all(r.ack_code == "AA" for r in results)
        assert sum(1 for r in results if r.changed) == 30
        [count] = await rows(
            integration_sessions,
            "SELECT count(*) AS n FROM encounter WHERE source_system = :s",
            s=source.id,
        )
        assert count.n == 30


@asynccontextmanager
async def own_pool(settings: Settings, size: int) -> AsyncIterator[async_sessionmaker]:
    """Sessions on a pool of `size` connections of the test's own, disposed afterwards."""
    engine = make_engine(settings, "integration", pool_size=size)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


class TestTheBatchTransaction:
    """repository.transaction: a batch on a pooled connection's driver, no ORM session."""

    async def test_a_connection_lost_mid_batch_is_dropped_and_the_next_batch_applied(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            async with repository.transaction(sessions) as db:
                lost_pid = db.get_server_pid()
            with pytest.raises(Exception):  # noqa: B017 - whichever way the loss shows
                async with repository.transaction(sessions) as db:
                    assert db.get_server_pid() == lost_pid  # the pooled one
                    await db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            report = a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
            [result] = await apply_messages(sessions, infra, [incoming(source, "C1", report)])
            assert result.ack_code == "AA" and result.changed
            async with repository.transaction(sessions) as db:
                assert db.get_server_pid() != lost_pid, "the lost connection was pooled again"

    async def test_when_the_database_drops_every_connection_one_batch_fails_not_one_each(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        """As after a PostgreSQL restart: every pooled connection is dead. The first batch
        fails (its sender gets no ACK and resends); the pool starts afresh, so the resend and
        the messages after it are applied, each once."""
        async with own_pool(infra, 3) as sessions:
            source = await new_source()
            ready, hold = asyncio.Event(), asyncio.Event()
            pids: list[int] = []

            async def hold_one() -> None:  # three batches at once: three pooled connections
                async with repository.transaction(sessions) as db:
                    pids.append(db.get_server_pid())
                    if len(pids) == 3:
                        ready.set()
                    await hold.wait()

            holders = [asyncio.create_task(hold_one()) for _ in range(3)]
            await ready.wait()
            hold.set()
            await asyncio.gather(*holders)
            admin = await connect(infra, "integration")
            try:
                await admin.execute("SELECT pg_terminate_backend(p) FROM unnest($1::int[]) p", pids)
            finally:
                await admin.close()
            reports = [
                a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
                for _ in range(4)
            ]
            outcomes: list[str] = []
            for i, report in enumerate(reports):
                for _attempt in range(3):  # a sender resends what got no ACK
                    try:
                        [result] = await apply_messages(
                            sessions, infra, [incoming(source, f"C{i}", report)]
                        )
                    except Exception as exc:  # noqa: BLE001 - no ACK: resend
                        outcomes.append(f"failed: {type(exc).__name__}")
                        continue
                    outcomes.append(result.ack_code)
                    break
            assert outcomes[1:] == ["AA"] * 4, outcomes
            assert outcomes[0].startswith("failed"), outcomes
            contacts = await rows(
                sessions, "SELECT source_ref FROM encounter WHERE source_system = :s", s=source.id
            )
            assert sorted(c.source_ref for c in contacts) == sorted(r.source_ref for r in reports)

    async def test_a_statement_error_rolls_the_batch_back_and_keeps_the_connection(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            report = a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())
            with pytest.raises(asyncpg.DataError):
                async with repository.transaction(sessions) as db:
                    pid = db.get_server_pid()
                    await apply_in(db, infra, [incoming(source, "C1", report)])
                    await db.execute("SELECT 1 / 0")
            assert (
                await rows(
                    sessions, "SELECT 1 FROM encounter WHERE source_system = :s", s=source.id
                )
                == []
            ), "the batch's writes were not rolled back"
            async with repository.transaction(sessions) as db:
                assert db.get_server_pid() == pid
                assert not db.is_in_transaction() or await db.fetchval("SELECT 1") == 1

    async def test_a_batch_statement_refuses_to_run_outside_a_transaction(
        self, infra: Settings, integration_sessions
    ) -> None:
        engine = integration_sessions.kw["bind"]
        raw = await engine.raw_connection()
        try:
            with pytest.raises(RuntimeError, match="outside the batch's transaction"):
                await repository.write_batch(raw.driver_connection, {})
        finally:
            raw.close()


def test_a_pseudonymiser_gives_the_pseudonyms_pseudonymise_gives(infra: Settings) -> None:
    numbers = [synthetic_nhs_number() for _ in range(5)]
    pseudonym = pseudonymiser(infra)
    assert [pseudonym(n) for n in numbers] == [pseudonymise(n, infra) for n in numbers]
