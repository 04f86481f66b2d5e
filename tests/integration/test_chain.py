"""A group commit's batches one after another (services/integration/repository.py Chain, and
services/integration/group_commit.py): a COMMIT with another batch waiting begins that batch
in the same round trip, on the same connection; with nothing waiting the connection goes back
to the pool, never idle in a transaction. And a message planned before its batch
(applying.plan_ahead) is planned again when its batch finds its sender changed."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from services.integration import applying, repository
from services.integration.applying import apply_in, plan_ahead
from services.integration.group_commit import GroupCommit
from services.integration.models import SourceSystem
from shared.db import connect, unit_of_work
from shared.pseudonym import pseudonymiser
from shared.settings import Settings
from tests.helpers import synthetic_nhs_number
from tests.integration.conftest import NewSource
from tests.integration.test_batches import incoming, own_pool
from tests.integration.test_handlers import a_report, rows


def a_visit() -> Any:
    return a_report(f"V{uuid.uuid4().hex[:8]}", nhs_number=synthetic_nhs_number())


class Statements:
    """The statements a connection sends (asyncpg's query logger)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, record: Any) -> None:
        self.sent.append(" ".join(record.query.split())[:40])

    def transaction_control(self) -> list[str]:
        return [q for q in self.sent if q.split(" ")[0].rstrip(";") in ("BEGIN", "COMMIT")]


async def contacts_of(sessions: Any, source: SourceSystem) -> list[str]:
    found = await rows(
        sessions, "SELECT source_ref FROM encounter WHERE source_system = :s", s=source.id
    )
    return sorted(r.source_ref for r in found)


class TestChainedTransactions:
    async def test_a_commit_with_another_waiting_begins_it_in_the_same_round_trip(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 2) as sessions:
            source = await new_source()
            chain = repository.Chain(sessions)
            sent = Statements()
            visits = [a_visit() for _ in range(3)]
            pids = []
            for i, visit in enumerate(visits):
                async with chain.transaction(more=lambda i=i: i < 2) as db:
                    if i == 0:
                        db.add_query_logger(sent)
                    pids.append(db.get_server_pid())
                    await apply_in(db, infra, [incoming(source, f"C{i}", visit)])
                if i < 2:
                    # committed: another connection sees it; the next one is begun already
                    assert len(await contacts_of(sessions, source)) == i + 1
                    assert chain.held is not None
                    assert chain.held.driver_connection.is_in_transaction()
            assert chain.held is None, "nothing waited: the connection went back to the pool"
            assert len(set(pids)) == 1
            assert await contacts_of(sessions, source) == sorted(v.source_ref for v in visits)
            # (logged from inside the first transaction: its BEGIN was sent before; asyncpg
            # calls its loggers soon after each statement, so after the await above)
            assert sent.transaction_control() == ["COMMIT; BEGIN", "COMMIT; BEGIN", "COMMIT"]

    async def test_with_nothing_waiting_the_connection_is_pooled_outside_a_transaction(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            chain = repository.Chain(sessions)
            async with chain.transaction(more=lambda: False) as db:
                await apply_in(db, infra, [incoming(source, "C1", a_visit())])
            assert chain.held is None
            engine = sessions.kw["bind"]
            raw = await engine.raw_connection()  # the pool's only connection
            try:
                assert not raw.driver_connection.is_in_transaction()
            finally:
                raw.close()

    async def test_an_error_in_a_begun_transaction_rolls_back_that_batch_only(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            chain = repository.Chain(sessions)
            first, second, third = a_visit(), a_visit(), a_visit()
            async with chain.transaction(more=lambda: True) as db:
                pid = db.get_server_pid()
                await apply_in(db, infra, [incoming(source, "C1", first)])
            with pytest.raises(asyncpg.DataError):
                async with chain.transaction(more=lambda: True) as db:
                    await apply_in(db, infra, [incoming(source, "C2", second)])
                    await db.execute("SELECT 1 / 0")
            assert chain.held is None, "a failed batch does not begin another"
            async with chain.transaction() as db:
                assert db.get_server_pid() == pid, "a statement's error keeps the connection"
                await apply_in(db, infra, [incoming(source, "C3", third)])
            assert await contacts_of(sessions, source) == sorted(
                [first.source_ref, third.source_ref]
            )

    async def test_a_kept_connection_lost_fails_one_batch_and_the_pool_starts_afresh(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            chain = repository.Chain(sessions)
            async with chain.transaction(more=lambda: True) as db:
                lost = db.get_server_pid()
            admin = await connect(infra, "integration")
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", lost)
            finally:
                await admin.close()
            with pytest.raises(Exception):  # noqa: B017 - whichever way the loss shows
                async with chain.transaction() as db:
                    await apply_in(db, infra, [incoming(source, "C1", a_visit())])
            visit = a_visit()
            async with chain.transaction() as db:
                assert db.get_server_pid() != lost
                await apply_in(db, infra, [incoming(source, "C1", visit)])
            assert await contacts_of(sessions, source) == [visit.source_ref]

    async def test_closing_gives_back_a_kept_connection_rolled_back(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        async with own_pool(infra, 1) as sessions:
            source = await new_source()
            chain = repository.Chain(sessions)
            async with chain.transaction(more=lambda: True) as db:
                await apply_in(db, infra, [incoming(source, "C1", a_visit())])
            await chain.held.driver_connection.execute("SET LOCAL application_name = 'kept'")
            await chain.close()
            assert chain.held is None
            engine = sessions.kw["bind"]
            raw = await engine.raw_connection()
            try:
                db = raw.driver_connection
                assert not db.is_in_transaction()
                assert await db.fetchval("SHOW application_name") != "kept"
            finally:
                raw.close()


class TestPlannedAhead:
    async def test_the_group_plans_each_message_as_it_arrives(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        group = GroupCommit(integration_sessions, infra)
        try:
            visit = a_visit()
            # the first message loads its sender into the sources' cache
            first = await group.apply(incoming(source, "C1", a_visit()))
            item = incoming(source, "C2", visit)
            result = await group.apply(item)
        finally:
            await group.close()
        assert first.ack_code == result.ack_code == "AA"
        assert item.ahead is not None and item.ahead.source is not None
        assert item.ahead.source.id == source.id
        assert visit.source_ref in await contacts_of(integration_sessions, source)

    async def test_a_plan_made_with_a_sender_since_changed_is_made_again(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        """Planned while the sender was active; by its batch the sender is switched off (and
        the cache read again): the batch refuses it as its sender now is, not as planned."""
        source = await new_source()
        async with repository.transaction(integration_sessions) as db:
            await apply_in(db, infra, [incoming(source, "C1", a_visit())])  # cached now
        item = incoming(source, "C2", a_visit())
        plan_ahead(item, pseudonymiser(infra))
        assert item.ahead is not None and item.ahead.refusal is None
        async with unit_of_work(integration_sessions) as session:
            stored = await session.get(SourceSystem, source.id)
            assert stored is not None
            stored.active = False
        for key in [k for k in applying._sources if source.id in k]:  # noqa: SLF001
            del applying._sources[key]  # noqa: SLF001 - as when its 5 s are up
        async with repository.transaction(integration_sessions) as db:
            [result] = await apply_in(db, infra, [item])
        assert result.ack_code == "AR"
        assert len(await contacts_of(integration_sessions, source)) == 1, "C1 only"

    async def test_a_sender_not_in_the_cache_is_not_planned_ahead(
        self, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        item = incoming(source, "C1", a_visit())
        plan_ahead(item, pseudonymiser(infra))
        assert item.ahead is None
