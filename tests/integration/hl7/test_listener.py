"""The HL7 v2 listener as a real process (part integration-mllp, started as `waymark up`
starts it) with the integration relay, on the real PostgreSQL and Kafka, driven by the `hl7`
library's own MLLP client: ACKs, the contacts on waymark.encounters.v1, faults on the wire and
kill -9 of the listener mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import text

from devtools import stack
from shared.settings import Settings
from shared.topics import ENCOUNTERS
from tests.helpers import eventually, read_topic
from tests.integration.conftest import NewSource
from tests.integration.hl7.messages import adt, ago

PARTS = ("integration-relay", "integration-mllp")


@pytest.fixture(scope="module")
async def listener(infra: Settings) -> AsyncIterator[Settings]:
    """The listener and the relay of the test instance, started by the supervisor's code; those
    this module started are stopped after it (those the session's whole stack runs stay up for
    the tests after it)."""
    started = []
    for name in PARTS:
        part = stack.part_by_name(name)
        if not await part.probe(infra):
            started.append(part)
        await part.start(infra)
    yield infra
    for part in started:
        part.stop(infra)


async def connect(s: Settings) -> tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter]:
    return await open_hl7_connection("127.0.0.1", s.integration_mllp_listen_port, encoding="utf-8")


async def exchange(s: Settings, messages: list[str]) -> list[hl7.Message]:
    """Send each message on one connection and read its ACK before the next, as a PAS does."""
    reader, writer = await connect(s)
    acks = []
    try:
        for m in messages:
            writer.writemessage(hl7.parse(m))
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readmessage(), 30))
    finally:
        writer.close()
    return acks


def msa(ack: hl7.Message) -> tuple[str, str]:
    return str(ack["MSA.F1"]), str(ack["MSA.F2"])


async def scalar(sessions, sql: str, **params: object):  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return (await session.exec(text(sql).bindparams(**params))).one()[0]  # type: ignore[call-overload]


async def encounter_ids(sessions, source_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        found = await session.exec(  # type: ignore[call-overload]
            text("SELECT id::text, revision FROM encounter WHERE source_system = :s").bindparams(
                s=source_id
            )
        )
        return {r[0]: r[1] for r in found.all()}


def stream(facility: str, visits: int, tag: str) -> list[str]:
    """A04 for each visit, then A03 for each: 2 x visits messages, each changing a contact."""
    msgs = [
        adt("A04", facility=facility, control_id=f"{tag}-R{i}", visit=f"{tag}-V{i}")
        for i in range(visits)
    ]
    msgs += [
        adt(
            "A03",
            facility=facility,
            control_id=f"{tag}-D{i}",
            visit=f"{tag}-V{i}",
            discharge=ago(minutes=5),
        )
        for i in range(visits)
    ]
    return msgs


def contacts(records: list) -> list[dict]:  # type: ignore[type-arg]
    """The contact events among the records: the topic is shared with the rest of the session,
    whose poison suite puts undecodable records on it (the consumers dead-letter those)."""
    found = []
    for r in records:
        try:
            event = json.loads(r.value)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("data"), dict):
            found.append(event["data"])
    return found


async def published(s: Settings, ids: dict[str, int]) -> dict[tuple[str, int], int]:
    """(encounter id, revision) -> how many times it is on the topic, once every revision of
    every contact has arrived."""

    def complete(records: list) -> bool:  # type: ignore[type-arg]
        seen = {(d.get("encounter_id"), d.get("revision")) for d in contacts(records)}
        return all((i, rev) in seen for i, last in ids.items() for rev in range(1, last + 1))

    records = await read_topic(s, s.topic(ENCOUNTERS), until=complete, timeout=60)
    counts: dict[tuple[str, int], int] = {}
    for data in contacts(records):
        if data.get("encounter_id") in ids:
            key = (data["encounter_id"], data["revision"])
            counts[key] = counts.get(key, 0) + 1
    return counts


class TestStream:
    async def test_a_stream_of_adt_gets_aa_each_and_every_contact_reaches_the_topic(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        messages = stream(source.sending_facility or "", 10, "S")
        acks = await exchange(listener, messages)
        assert [msa(a) for a in acks] == [("AA", str(hl7.parse(m)["MSH.F10"])) for m in messages]
        ids = await encounter_ids(integration_sessions, source.id)
        assert len(ids) == 10 and set(ids.values()) == {2}
        counts = await published(listener, ids)
        assert set(counts) == {(i, r) for i in ids for r in (1, 2)}
        # the events carry codes, never the message's identifiers
        records = await read_topic(
            listener, listener.topic(ENCOUNTERS), until=lambda rs: len(rs) > 0, timeout=30
        )
        for r in records:
            assert b"9434765919" not in r.value and b"SYNTHETIC" not in r.value

    async def test_a_duplicate_control_id_is_acknowledged_without_a_second_effect(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        m = adt("A04", facility=source.sending_facility or "", control_id="DUP", visit="VD")
        acks = await exchange(listener, [m, m, m])
        assert [msa(a) for a in acks] == [("AA", "DUP")] * 3
        assert await encounter_ids(integration_sessions, source.id) == {
            next(iter(await encounter_ids(integration_sessions, source.id))): 1
        }
        n = await scalar(
            integration_sessions,
            "SELECT count(*) FROM inbound_message WHERE source_system = :s",
            s=source.id,
        )
        assert n == 1


class TestFaultsOnTheWire:
    async def test_malformed_and_wrong_encoding_get_their_refusal_and_the_next_message_aa(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        fac = source.sending_facility or ""
        broken = adt("A04", facility=fac, control_id="B1", visit="V").replace("\rPV1|", "\r$$$|")
        wrong = adt("A04", facility=fac, control_id="B2", visit="V").replace(
            "MSH|^~\\&|", "MSH|^~&\\|", 1
        )
        good = adt("A04", facility=fac, control_id="B3", visit="V")
        reader, writer = await connect(listener)
        try:
            acks = []
            for raw in (broken, wrong, good):
                writer.writeblock(raw.encode())
                await writer.drain()
                acks.append(await asyncio.wait_for(reader.readmessage(), 30))
        finally:
            writer.close()
        assert msa(acks[0]) == ("AE", "B1") and "segment name" in str(acks[0]["MSA.F3"])
        assert msa(acks[1])[0] == "AR" and "delimiters" in str(acks[1]["MSA.F3"])
        assert msa(acks[2]) == ("AA", "B3")
        assert str(acks[1]["ERR.F3.R1.C1"]) == "100"

    async def test_an_oversized_message_is_refused_and_its_connection_closed(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        fac = source.sending_facility or ""
        limit = listener.integration_mllp_max_message_bytes
        huge = adt(
            "A04", facility=fac, control_id="BIG", visit="V", extra=["NTE|1||" + "x" * limit]
        )
        reader, writer = await connect(listener)
        try:
            writer.writeblock(huge.encode())
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 30)
            assert str(ack["MSA.F1"]) == "AR" and "larger than" in str(ack["MSA.F3"])
            # and the listener hangs up: what follows of that connection is never read
            assert await asyncio.wait_for(reader.read(), 30) == b""
        finally:
            writer.close()
        # nothing of it was applied; a normal message on a new connection is fine
        assert await encounter_ids(integration_sessions, source.id) == {}
        ok = adt("A04", facility=fac, control_id="AFTER", visit="V")
        assert msa((await exchange(listener, [ok]))[0]) == ("AA", "AFTER")

    async def test_a_connection_dropped_mid_frame_loses_only_that_message(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        fac = source.sending_facility or ""
        first = adt("A04", facility=fac, control_id="F1", visit="VF1")
        cut = adt("A04", facility=fac, control_id="F2", visit="VF2")
        reader, writer = await connect(listener)
        writer.writemessage(hl7.parse(first))
        await writer.drain()
        assert msa(await asyncio.wait_for(reader.readmessage(), 30)) == ("AA", "F1")
        frame = b"\x0b" + cut.encode() + b"\x1c\r"
        writer.write(frame[: len(frame) // 2])
        await writer.drain()
        writer.transport.abort()  # the TCP connection drops mid-frame
        await asyncio.sleep(0.5)
        assert len(await encounter_ids(integration_sessions, source.id)) == 1
        n = await scalar(
            integration_sessions,
            "SELECT count(*) FROM inbound_message WHERE source_system = :s AND control_id = 'F2'",
            s=source.id,
        )
        assert n == 0
        # the sender resends it on a new connection: applied once
        assert msa((await exchange(listener, [cut]))[0]) == ("AA", "F2")
        assert len(await encounter_ids(integration_sessions, source.id)) == 2


class TestKill9:
    async def test_kill_9_of_the_listener_mid_stream_loses_nothing_and_applies_nothing_twice(
        self, listener: Settings, integration_sessions, new_source: NewSource
    ) -> None:
        source = await new_source()
        messages = stream(source.sending_facility or "", 15, "K")
        part = stack.part_by_name("integration-mllp")
        acked: dict[str, int] = {}  # control id -> AAs received for it
        sends = 0
        kills_at = {7, 19}  # after these many ACKs, send the next message and kill -9 at once
        reader = writer = None
        i = 0
        while i < len(messages):
            control = str(hl7.parse(messages[i])["MSH.F10"])
            try:
                if writer is None:
                    reader, writer = await connect(listener)
                writer.writemessage(hl7.parse(messages[i]))
                await writer.drain()
                sends += 1
                if sum(acked.values()) in kills_at:
                    kills_at.discard(sum(acked.values()))
                    pid = stack.read_pid(part.pid_file(listener))
                    assert pid is not None
                    os.killpg(pid, signal.SIGKILL)
                    await eventually(lambda p=pid: not stack.pid_alive(p), timeout=15)
                    asyncio.get_running_loop().call_later(
                        0.5, lambda: asyncio.ensure_future(part.start(listener))
                    )
                assert reader is not None
                ack = await asyncio.wait_for(reader.readmessage(), 10)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError):
                # no ACK: reconnect and resend the same message, as a PAS does
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.3)
                continue
            assert msa(ack) == ("AA", control)
            acked[control] = acked.get(control, 0) + 1
            i += 1
        if writer is not None:
            writer.close()
        await eventually(lambda: part.probe(listener), timeout=60)
        assert not kills_at, "both kills happened"
        assert sends > len(messages), "some message was resent after a kill"
        # every message acknowledged once, committed once; every contact has both revisions
        assert set(acked) == {str(hl7.parse(m)["MSH.F10"]) for m in messages}
        accepted = await scalar(
            integration_sessions,
            "SELECT count(*) FROM inbound_message "
            "WHERE source_system = :s AND outcome = 'accepted'",
            s=source.id,
        )
        assert accepted == len(messages) == sum(acked.values())
        ids = await encounter_ids(integration_sessions, source.id)
        assert len(ids) == 15 and set(ids.values()) == {2}
        events = await scalar(
            integration_sessions,
            "SELECT count(*) FROM outbox o JOIN encounter e "
            "ON o.payload->'data'->>'encounter_id' = e.id::text WHERE e.source_system = :s",
            s=source.id,
        )
        assert events == len(messages)
        counts = await published(listener, ids)
        assert set(counts) == {(i, r) for i in ids for r in (1, 2)}
