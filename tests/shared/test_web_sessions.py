"""The request sessions of shared/web.py on the real database: a route's statements share one
transaction (`SessionDep`), or, for a route whose write is one statement, each commits itself
unless an Idempotency-Key asks for the key's row and the write together
(`OneStatementSessionDep`, issue #20)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from shared.web import OneStatementSessionDep, SessionDep

TWO_STATEMENTS = "SELECT transaction_timestamp() AS t"


@pytest.fixture(scope="module")
async def client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    engine = make_engine(infra, "referrals")
    app = FastAPI()
    app.state.sessions = make_sessionmaker(engine)

    async def timestamps(session) -> dict[str, bool]:  # type: ignore[no-untyped-def]
        first = (await session.exec(text(TWO_STATEMENTS))).one()[0]
        await asyncio.sleep(0.01)
        second = (await session.exec(text(TWO_STATEMENTS))).one()[0]
        return {"one_transaction": first == second}

    @app.get("/one-statement")
    async def one_statement(session: OneStatementSessionDep) -> dict[str, bool]:
        return await timestamps(session)

    @app.get("/transaction")
    async def transaction(session: SessionDep) -> dict[str, bool]:
        return await timestamps(session)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as c:
        yield c
    await engine.dispose()


async def test_a_route_s_statements_share_one_transaction(client: httpx.AsyncClient) -> None:
    r = await client.get("/transaction")
    assert r.json() == {"one_transaction": True}


async def test_without_a_key_each_statement_commits_itself(client: httpx.AsyncClient) -> None:
    r = await client.get("/one-statement")
    assert r.json() == {"one_transaction": False}


async def test_with_a_key_the_statements_share_one_transaction(client: httpx.AsyncClient) -> None:
    r = await client.get("/one-statement", headers={"Idempotency-Key": "k-1"})
    assert r.json() == {"one_transaction": True}


async def test_the_pool_s_connections_go_back_to_transactions(client: httpx.AsyncClient) -> None:
    for _ in range(3):  # the same pooled connections, after autocommit use
        assert (await client.get("/one-statement")).json() == {"one_transaction": False}
        assert (await client.get("/transaction")).json() == {"one_transaction": True}
