"""The raw baseline for bench/referrals.py: a bare FastAPI endpoint that inserts one row with
asyncpg, no auth, no validation beyond the body model, no audit, no outbox."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel

DSN = os.environ["BENCH_DSN"]


class Item(BaseModel):
    nhs_number: str
    given_name: str
    family_name: str
    to_service_id: str
    reason_codes: list[str]
    clinical_summary: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DSN, min_size=5, max_size=5)
    async with app.state.pool.acquire() as conn:
        await conn.execute("""CREATE TABLE IF NOT EXISTS bench_bare_item (
            id BIGSERIAL PRIMARY KEY, nhs_number TEXT, given_name TEXT, family_name TEXT,
            to_service_id TEXT, reason_codes TEXT[], clinical_summary TEXT,
            created_at TIMESTAMPTZ DEFAULT now())""")
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/items", status_code=201)
async def create(item: Item) -> dict[str, int]:
    async with app.state.pool.acquire() as conn:
        new_id = await conn.fetchval(
            "INSERT INTO bench_bare_item (nhs_number, given_name, family_name, to_service_id, "
            "reason_codes, clinical_summary) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            item.nhs_number,
            item.given_name,
            item.family_name,
            item.to_service_id,
            item.reason_codes,
            item.clinical_summary,
        )
    return {"id": new_id}
