"""Fixtures of the bulk importer's tests: a registered bulk source of its own per test, and
synthetic extract files."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from devtools.synthetic.extracts import ECDS_COLUMNS, ecds_rows, nhs_numbers, write_csv
from services.integration.models import SourceSystem
from tests.integration.conftest import NewSource


@pytest.fixture
async def bulk_source(new_source: NewSource) -> SourceSystem:
    return await new_source(channel="bulk", org_code="RX1")


def ecds_file(tmp_path: Path, count: int, *, seed: int, bad: Sequence[int] = ()) -> Path:
    """`count` synthetic attendances (unique ids, their own seed); rows at the `bad` positions
    carry an NHS number that fails its check digit."""
    numbers = nhs_numbers(50, first_body=random.Random(seed).randrange(200000, 900000))
    rows = ecds_rows(numbers, count=count, seed=seed, now=datetime.now(UTC))
    for i in bad:
        rows[i][1] = rows[i][1][:9] + str((int(rows[i][1][9]) + 1) % 10)
    return write_csv(tmp_path / f"ae-{seed}.csv", ECDS_COLUMNS, rows)


async def scalar(sessions: async_sessionmaker, sql: str, **params: object) -> object:  # type: ignore[type-arg]
    async with sessions() as session:
        return (await session.exec(text(sql).bindparams(**params))).scalar_one()  # type: ignore[call-overload]
