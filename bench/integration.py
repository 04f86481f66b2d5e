"""HL7 v2 over MLLP: ADT messages per second from an MLLP client to the event on
waymark.encounters.v1, with p50/p99 ACK latency, against a raw MLLP echo server in the same
run.

  waymark: the integration-mllp process (started as `waymark up` starts it) parses each A04,
           applies it in one transaction (contact, outbox event, message log, audit), answers
           AA after the commit; the integration relay publishes the event to Kafka. A round's
           clock stops when its last message's event is on the topic (watched by the topic's
           end offsets; every event is read back and checked once the clock has stopped).
  raw:     a separate process running the same library's MLLP server (`hl7.mllp`) that parses
           each message and answers AA with `create_ack`, no other work.

Both sides get the same messages from the same client: `--connections` MLLP connections, each
sending one message and waiting for its ACK before the next (as a PAS does). The messages go
in `--rounds` rounds, raw and Waymark taking turns to go first, so that both sides see the
same machine (a shared 2-core VM's speed drifts by a third within minutes); each side's rate
is its messages over the sum of its rounds' times, and each round's ratio is printed too. Any
ACK other than AA, any event missing, twice, or not this run's, or any error, and the run
prints what failed and exits non-zero without a ratio.

Run on demand from the repository root: `python -m bench.integration [--messages N]
[--connections C] [--rounds R]`. It works as the instance of the environment (default
`bench`: database waymark_bench), registers a source of its own each run, and needs
PostgreSQL and Kafka up (`waymark up`). Record results in bench/RESULTS.md.
"""

from __future__ import annotations

import os

for _k, _v in {
    "WAYMARK_INSTANCE": "bench",
    "WAYMARK_API_PORT_BASE": "18700",
    "WAYMARK_DB_NAME": "waymark_bench",
    "WAYMARK_TOPIC_PREFIX": "bench.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-bench",
}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import hl7  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from hl7.mllp import open_hl7_connection, start_hl7_server  # noqa: E402

from devtools import stack  # noqa: E402
from devtools.stack import idp  # noqa: E402
from devtools.stack.health import app_pid_file  # noqa: E402
from devtools.stack.process_control import read_pid  # noqa: E402
from services.integration.models import SourceSystem  # noqa: E402
from shared.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from shared.kafka_security import client_options  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402
from shared.topics import ENCOUNTERS  # noqa: E402

PARTS = ("integration-relay", "integration-mllp")
ROOT = Path(__file__).resolve().parent.parent
NHS_BODY = 999_000_000


def nhs_number(i: int) -> str:
    """A 999-range (test) NHS number with a valid Modulus 11 check digit."""
    while True:
        body = f"{NHS_BODY + i % 1_000_000:09d}"
        check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return body + str(0 if check == 11 else check)
        i += 1


def messages(facility: str, n: int, tag: str) -> list[str]:
    at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%d%H%M%S+0000")
    return [
        "\r".join(
            [
                f"MSH|^~\\&|PAS|{facility}|WAYMARK|ICS-1|{at}||ADT^A04^ADT_A01|{tag}-{i}|P|2.4",
                f"EVN|A04|{at}",
                f"PID|1||H{i}^^^RX1^MR~{nhs_number(i)}^^^NHS^NH||SYNTHETIC^ALEX",
                "PV1|1|E|MAJORS^^^RX101" + "|" * 16 + f"{tag}-V{i}" + "|" * 25 + at,
                "PV2|||279039007^Low back pain^SCT",
            ]
        )
        for i in range(n)
    ]


async def drive(port: int, batches: list[list[str]]) -> tuple[float, list[float], list[str]]:
    """Send each batch on its own connection, one message at a time; (elapsed, ACK latencies,
    failures)."""
    latencies: list[float] = []
    failures: list[str] = []

    async def one_connection(batch: list[str]) -> None:
        try:
            reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        except OSError as exc:
            failures.append(f"connect: {exc}")
            return
        try:
            for m in batch:
                t = time.perf_counter()
                writer.writemessage(hl7.parse(m))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), 60)
                latencies.append(time.perf_counter() - t)
                if str(ack["MSA.F1"]) != "AA":
                    failures.append(f"{ack['MSA.F2']}: {ack['MSA.F1']} {ack['MSA.F3']}")
        except Exception as exc:  # noqa: BLE001 (a bench counts every failure)
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_connection(b) for b in batches))
    return time.perf_counter() - t0, latencies, failures


def split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


async def echo_server(port: int) -> None:
    async def answer(reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                message = await reader.readmessage()
                writer.writemessage(message.create_ack("AA"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await start_hl7_server(answer, "127.0.0.1", port, encoding="utf-8")
    async with server:
        await server.serve_forever()


async def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@asynccontextmanager
async def raw_echo(s: Settings) -> AsyncIterator[int]:
    """The raw MLLP echo server, in a process of its own, for the whole run: its port."""
    port = s.integration_mllp_listen_port + 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.integration", "--echo-server", str(port)], cwd=ROOT
    )
    try:
        await wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Waymark:
    """Waymark's side: rounds of messages through the listener, each round timed until its
    last event is on the topic (the next round starts only then).

    While a round is timed, the topic is watched by its end offsets alone, polled once the last
    ACK is in: decoding every event in this process, beside the client, would slow the client
    on Waymark's side only. Once the clock has stopped, every record the round added is read
    and checked: exactly the round's contacts, of this run's source, each once; anything else
    fails the run (no ratio)."""

    def __init__(self, s: Settings, source_id: str) -> None:
        self.s = s
        self.source_id = source_id
        self.topic = s.topic(ENCOUNTERS)
        self.consumer = AIOKafkaConsumer(**client_options(s), group_id=None)
        self.tps: list[TopicPartition] = []
        self.seen: set[str] = set()
        self.cpu: dict[str, float] = {}  # CPU seconds used in Waymark's rounds, per process

    async def start(self) -> None:
        await self.consumer.start()
        parts = self.consumer.partitions_for_topic(self.topic)
        if not parts:
            await self.consumer._client.force_metadata_update()  # noqa: SLF001
            parts = self.consumer.partitions_for_topic(self.topic) or set()
        self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _ends(self) -> dict[TopicPartition, int]:
        return dict(await self.consumer.end_offsets(self.tps))

    async def _until_added(self, start: dict[TopicPartition, int], n: int) -> float:
        """When the topic holds `n` records more than at `start` (polled every 10 ms)."""
        while True:
            ends = await self._ends()
            if sum(ends[tp] - start[tp] for tp in self.tps) >= n:
                return time.perf_counter()
            await asyncio.sleep(0.01)

    async def _check(self, start: dict[TopicPartition, int], n: int) -> list[str]:
        """Read back what the round added: each of its n contacts once, nothing else."""
        ends = await self._ends()
        for tp in self.tps:
            self.consumer.seek(tp, start[tp])
        ids: list[str] = []
        foreign = 0
        while [tp for tp in self.tps if await self.consumer.position(tp) < ends[tp]]:
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.offset >= ends[TopicPartition(r.topic, r.partition)]:
                        continue
                    data = json.loads(r.value)["data"]
                    if data["source_system"] == self.source_id:
                        ids.append(data["encounter_id"])
                    else:
                        foreign += 1
        failures = []
        if foreign:
            failures.append(f"{foreign} events of another source on {self.topic}: not timed")
        if len(ids) != n or len(set(ids)) != n or self.seen & set(ids):
            failures.append(f"{len(set(ids) - self.seen)} distinct new events of {n} expected")
        self.seen |= set(ids)
        return failures

    async def round(self, batches: list[list[str]]) -> tuple[float, float, list[float], list[str]]:
        """(seconds to the last ACK, seconds to the last event on the topic, latencies,
        failures) of one round."""
        n = sum(len(b) for b in batches)
        start = await self._ends()
        cpu_before = cpu_seconds(self.s)
        t0 = time.perf_counter()
        acked, latencies, failures = await drive(self.s.integration_mllp_listen_port, batches)
        if failures:
            return acked, float("nan"), latencies, failures
        try:
            last_event = await asyncio.wait_for(self._until_added(start, n), 120)
        except TimeoutError:
            failures.append(f"fewer than {n} events reached {self.topic} within 120 s")
            return acked, float("nan"), latencies, failures
        for key, used in cpu_seconds(self.s).items():
            self.cpu[key] = self.cpu.get(key, 0.0) + used - cpu_before.get(key, 0.0)
        return acked, last_event - t0, latencies, await self._check(start, n)


def cpu_seconds(s: Settings) -> dict[str, float]:
    """CPU (user + system) used so far by each process on Waymark's path: the listener, the
    relay, the PostgreSQL backends of this instance's database, the Kafka broker, and this
    process (the client and the topic watcher). A process that ends meanwhile is left out."""
    tick = os.sysconf("SC_CLK_TCK")
    pids: dict[str, list[int]] = {"bench client": [os.getpid()]}
    for name in PARTS:
        pid = read_pid(app_pid_file(s, name))
        if pid is not None:
            pids[name] = [pid]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if cmd.startswith(b"postgres: ") and f" {s.db_name} ".encode() in cmd:
            pids.setdefault("postgresql backends", []).append(int(proc.name))
        elif b"kafka.Kafka" in cmd:
            pids.setdefault("kafka", []).append(int(proc.name))
    used: dict[str, float] = {}
    for name, ids in pids.items():
        for pid in ids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used[f"{name}:{pid}"] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_per_message(used: dict[str, float], n: int) -> dict[str, float]:
    """Milliseconds of CPU a message, per process kind, from the CPU seconds each process used
    (a process begun meanwhile, such as a connection's PostgreSQL backend, counts whole)."""
    per: dict[str, float] = {}
    for key, t in used.items():
        kind = key.rsplit(":", 1)[0]
        per[kind] = per.get(kind, 0.0) + t * 1000 / n
    return per


@dataclass
class Side:
    """One side's rounds, summed: seconds to the last ACK and to the end (the raw side ends at
    its last ACK; Waymark's when its last event is on the topic), every ACK's latency and
    every failure."""

    to_ack: float = 0.0
    rounds: list[float] = field(default_factory=list)  # seconds to the end of each round
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def to_event(self) -> float:
        return sum(self.rounds)

    def add(
        self, to_ack: float, to_event: float, latencies: list[float], failures: list[str]
    ) -> None:
        self.to_ack += to_ack
        self.rounds.append(to_event)
        self.latencies += latencies
        self.failures += failures


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="the messages are sent in this many rounds, raw and Waymark taking turns to go "
        "first, so that both sides see the same machine (a 2-core VM's speed drifts)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    s = get_settings()
    idp_was_running = await idp.probe(s)
    await stack.prepare(s)  # starts the instance's identity provider when it is not running
    for name in PARTS:
        await stack.part_by_name(name).start(s)
    tag = uuid.uuid4().hex[:8].upper()
    source = SourceSystem(
        id=f"bench-{tag.lower()}",
        name="Bench PAS",
        org_code="RX1",
        channel="hl7v2",
        sending_facility=f"BENCH{tag}",
    )
    engine = make_engine(s, "integration", pool_size=1)
    async with unit_of_work(make_sessionmaker(engine)) as session:
        session.add(source)
    await engine.dispose()
    n = args.messages
    everything = messages(source.sending_facility or "", n, tag)
    rounds = max(1, min(args.rounds, n))
    sides: dict[str, Side] = {"raw": Side(), "waymark": Side()}
    waymark = Waymark(s, source.id)
    try:
        await waymark.start()
        async with raw_echo(s) as raw_port:
            for r in range(rounds):
                batches = split(everything[r::rounds], args.connections)
                # each side goes first in every other round
                for side in ("raw", "waymark") if r % 2 == 0 else ("waymark", "raw"):
                    if side == "raw":
                        elapsed, latencies, failures = await drive(raw_port, batches)
                        sides[side].add(elapsed, elapsed, latencies, failures)
                    else:
                        sides[side].add(*await waymark.round(batches))
                if sides["raw"].failures or sides["waymark"].failures:
                    break  # no ratio: stop at the round that failed
    finally:
        await waymark.stop()
        # the parts this run started stop with it (a later run starts its own)
        for name in reversed(PARTS):
            stack.part_by_name(name).stop(s)
        if not idp_was_running:
            idp.stop(s)
    raw, way = sides["raw"], sides["waymark"]

    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"messages: {n} ADT A04, {args.connections} connections, one message in flight each")
    if raw.failures or way.failures:
        for f in (raw.failures + way.failures)[:20]:
            print(f"FAILED: {f}")
        print(f"{len(raw.failures)} raw and {len(way.failures)} Waymark failures: no ratio")
        return 1
    cpu = cpu_per_message(waymark.cpu, n)
    print("CPU a message, ms: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(cpu.items())))
    print(f"CPU a message, ms, all of these: {sum(cpu.values()):.3f}")
    print(
        f"rounds: {rounds}, each side first in every other one; ratio of each round: "
        + " ".join(f"{r / w:.3f}" for r, w in zip(raw.rounds, way.rounds, strict=True))
    )
    raw_rate, way_rate = n / raw.to_event, n / way.to_event
    print(
        f"raw MLLP echo (parse + ACK):           {raw_rate:8.0f} msg/s   "
        f"ACK p50 {pct(raw.latencies, 50):7.1f} ms  p99 {pct(raw.latencies, 99):7.1f} ms"
    )
    print(
        f"Waymark MLLP -> commit -> ACK:         {n / way.to_ack:8.0f} msg/s   "
        f"ACK p50 {pct(way.latencies, 50):7.1f} ms  p99 {pct(way.latencies, 99):7.1f} ms"
    )
    print(f"Waymark MLLP -> event on the topic:    {way_rate:8.0f} msg/s")
    print(f"ratio (to the topic / raw):            {way_rate / raw_rate:8.3f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo-server":
        asyncio.run(echo_server(int(sys.argv[2])))
    else:
        sys.exit(asyncio.run(main()))
