"""The listener's limits, on a listener process of its own with small ones: connections at
once, a silent connection, a message begun and never finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from shared.settings import Settings
from tests.integration.conftest import NewSource
from tests.integration.hl7.listeners import own_listener
from tests.integration.hl7.messages import adt

IDLE, FRAME = 8.0, 2.0


@pytest.fixture(scope="module")
async def small(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    async with own_listener(
        infra,
        "limits",
        tmp_path_factory.mktemp("mllp-limits"),
        integration_mllp_max_connections=2,
        integration_mllp_idle_timeout_seconds=IDLE,
        integration_mllp_frame_timeout_seconds=FRAME,
    ) as s:
        yield s


async def connect(s: Settings):  # type: ignore[no-untyped-def]
    return await open_hl7_connection("127.0.0.1", s.integration_mllp_listen_port, encoding="utf-8")


async def closed_by_peer(reader, within: float) -> bool:  # type: ignore[no-untyped-def]
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (ConnectionError, TimeoutError):
        return False


class TestLimits:
    async def test_a_connection_beyond_the_limit_is_closed_and_the_others_served(
        self, small: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        held = [await connect(small), await connect(small)]
        await asyncio.sleep(0.5)
        extra_reader, extra_writer = await connect(small)
        assert await closed_by_peer(extra_reader, 10)
        extra_writer.close()
        reader, writer = held[0]
        m = adt("A04", facility=source.sending_facility or "", control_id="LIM1", visit="V")
        writer.writemessage(hl7.parse(m))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), 30)
        assert str(ack["MSA.F1"]) == "AA"
        for _, w in held:
            w.close()

    async def test_a_silent_connection_is_closed_after_the_idle_timeout(
        self, small: Settings
    ) -> None:
        await asyncio.sleep(1)  # the previous test's connections are gone
        reader, writer = await connect(small)
        t = time.monotonic()
        assert await closed_by_peer(reader, IDLE + 10)
        assert time.monotonic() - t >= IDLE - 0.5
        writer.close()

    async def test_a_message_begun_and_not_finished_is_dropped_with_its_connection(
        self, small: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        m = adt("A04", facility=source.sending_facility or "", control_id="SLOW", visit="V")
        reader, writer = await connect(small)
        writer.write(b"\x0b" + m.encode()[:40])  # and never the rest
        await writer.drain()
        t = time.monotonic()
        assert await closed_by_peer(reader, FRAME + 10)
        # well before the idle timeout: the frame timeout closed it
        assert time.monotonic() - t < IDLE - 2
        writer.close()
