"""Records applied by several workers at once come back in file order; records with the same key
never overlap; a failure stops the run at the record that failed."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.integration.importer.pipeline import in_order


async def test_results_come_back_in_order_and_one_keys_records_never_overlap() -> None:
    rng = random.Random(3)
    items = [(i, (f"k{rng.randrange(7)}", rng.random() / 200)) for i in range(1, 301)]
    running: set[str] = set()
    seen_by_key: dict[str, list[int]] = {}

    async def apply(item: tuple[str, float]) -> str:
        k, pause = item
        assert k not in running, "two records of one key at once"
        running.add(k)
        await asyncio.sleep(pause)
        running.discard(k)
        return k.upper()

    got = [(p, r) async for p, item, r in in_order(items, apply, key=lambda i: i[0], workers=5)]
    assert [p for p, _ in got] == list(range(1, 301))
    assert all(r == items[p - 1][1][0].upper() for p, r in got)
    for p, item in items:
        seen_by_key.setdefault(item[0], []).append(p)
    assert all(ps == sorted(ps) for ps in seen_by_key.values())


async def test_a_failure_is_raised_after_every_record_before_it() -> None:
    async def apply(item: int) -> int:
        await asyncio.sleep(0.001 * (item % 3))
        if item == 40:
            raise RuntimeError("the referrals service did not answer")
        return item

    done = []
    with pytest.raises(RuntimeError, match="did not answer"):
        async for p, _, _ in in_order(((i, i) for i in range(1, 100)), apply, key=str, workers=4):
            done.append(p)
    assert done == list(range(1, 40))


async def test_a_reading_failure_ends_the_run_with_its_error() -> None:
    def items():  # type: ignore[no-untyped-def]
        yield 1, 1
        raise OSError("disk gone")

    async def apply(item: int) -> int:
        return item

    with pytest.raises(OSError, match="disk gone"):
        async for _ in in_order(items(), apply, key=str, workers=2):
            pass
