"""Journeys on the Temporal dev server (SQLite, WAL): throughput, scale, memory, alert delay.

1. Signals per second through Kafka and the bridge into PatientJourney (signal-with-start, one
   per patient; every payload encrypted by the codec), beside raw signal-with-start calls to a
   trivial workflow from one client with 50 in flight and no codec, in the same run.
2. N open journeys (default 10,000), each with a pending triage timer, started and signalled
   through Kafka and the bridge: time taken until the worker has done every journey's first
   workflow task (Temporal's task-queue backlog at zero), and that none failed or timed out.
3. Worker memory (RSS of the separate worker process) per 1,000 cached journeys.
4. Delay from a stall deadline to the alert row in the PostgreSQL read model (p50, p99).

Run on demand: `python -m bench.journeys [--journeys 10000]`. Works as the `bench` instance
(database waymark_bench, topics bench.*, namespace waymark-bench) unless WAYMARK_* say
otherwise. Prints no figure if any journey stopped or failed its workflow task, or any deadline
alert did not arrive (exit status 1).
"""

from __future__ import annotations

import os

for _k, _v in {
    "WAYMARK_INSTANCE": "bench",
    "WAYMARK_DB_NAME": "waymark_bench",
    "WAYMARK_TOPIC_PREFIX": "bench.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-bench",
    "WAYMARK_API_PORT_BASE": "18700",
}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from sqlalchemy import text  # noqa: E402
from temporalio import workflow  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from devtools import stack  # noqa: E402
from shared.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from shared.events.binding import kafka_headers  # noqa: E402
from shared.events.envelope import make_event  # noqa: E402
from shared.events.referrals import ReferralAccepted, ReferralSubmitted  # noqa: E402
from shared.kafka_security import client_options  # noqa: E402
from shared.outbox import event_bytes  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402
from shared.temporal_client import connect as connect_temporal  # noqa: E402
from shared.topics import REFERRALS  # noqa: E402
from workflows.journeys import workflow_id  # noqa: E402
from workflows.journeys.bridge import CONSUMER_NAME  # noqa: E402
from workflows.journeys.rules import load_rules  # noqa: E402
from workflows.journeys.state import JourneyEvent  # noqa: E402
from workflows.journeys.worker import TASK_QUEUE  # noqa: E402
from workflows.journeys.workflows import JourneyInput, PatientJourney  # noqa: E402

RULES = load_rules()


@dataclass
class Ping:
    n: int


@workflow.defn
class Trivial:
    """The raw baseline: a workflow that counts signals and sleeps on a timer."""

    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.count >= 1_000_000, timeout=timedelta(days=30))

    @workflow.signal
    def ping(self, _p: Ping) -> None:
        self.count += 1


async def bounded(n_in_flight: int, coros) -> None:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(n_in_flight)

    async def one(c):  # type: ignore[no-untyped-def]
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def raw_signals(client: Client, n: int) -> float:
    queue = f"bench-trivial-{uuid.uuid4().hex[:6]}"
    # (unsandboxed: the trivial workflow lives in this script's __main__)
    async with Worker(
        client, task_queue=queue, workflows=[Trivial], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        t0 = time.perf_counter()
        await bounded(
            50,
            (
                client.start_workflow(
                    Trivial.run,
                    id=f"trivial-{queue}-{i}",
                    task_queue=queue,
                    start_signal="ping",
                    start_signal_args=[Ping(i)],
                )
                for i in range(n)
            ),
        )
        elapsed = time.perf_counter() - t0
        for i in range(n):  # stop them, so they don't linger in the namespace
            await client.get_workflow_handle(f"trivial-{queue}-{i}").terminate()
    return n / elapsed


async def direct_signals(client: Client, n: int, run: str) -> float:
    """Signal-with-start straight to PatientJourney (no Kafka, no bridge): the same workflow
    as the bridge signals, so the bridge's ratio to it is what Kafka and the bridge cost, and
    this one's ratio to the trivial workflow is what the journey's own first task costs."""
    now = datetime.now(UTC).isoformat()

    def event(i: int) -> JourneyEvent:
        return JourneyEvent(
            event_id=str(uuid.uuid4()),
            event_type="uk.waymark.referral.submitted",
            occurred_at=now,
            referral_id=str(uuid.uuid4()),
            state="submitted",
            from_org="GP-BENCH",
            to_org="PAIN-RTH",
            to_service_id="svc-pain-mgmt-programme",
            service_category="pain_management_programme",
            priority="routine",
            reason_codes=["279039007"],
        )

    t0 = time.perf_counter()
    await bounded(
        50,
        (
            client.start_workflow(
                PatientJourney.run,
                JourneyInput(patient_id=f"pt_b{run}_x{i}"),
                id=workflow_id(f"pt_b{run}_x{i}"),
                task_queue=TASK_QUEUE,
                start_signal="referral_event",
                start_signal_args=[event(i)],
            )
            for i in range(n)
        ),
    )
    return n / (time.perf_counter() - t0)


def submitted(
    patient: str, at: datetime, priority: str = "routine", referral_id: str | None = None
) -> bytes:
    data = ReferralSubmitted(
        referral_id=referral_id or str(uuid.uuid4()),
        from_org="GP-BENCH",
        to_org="PAIN-RTH",
        to_service_id="svc-pain-mgmt-programme",
        service_category="pain_management_programme",
        reason_codes=["279039007"],
        priority=priority,  # type: ignore[arg-type]
        state="submitted",
    )
    return event_bytes(make_event(data, subject=patient, time=at).model_dump(mode="json"))


async def produce(s: Settings, messages: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(
        **client_options(s), acks="all", enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                s.topic(REFERRALS), value=v, key=k.encode(), headers=kafka_headers()
            )
            for k, v in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bridge_lag(s: Settings) -> int:
    admin = AIOKafkaAdminClient(**client_options(s))
    consumer = AIOKafkaConsumer(**client_options(s))
    await admin.start()
    await consumer.start()
    try:
        topic = s.topic(REFERRALS)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = await consumer.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(s.topic(CONSUMER_NAME))
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


async def until_drained(s: Settings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await bridge_lag(s) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the bridge did not drain in time")
        await asyncio.sleep(0.5)


async def workflow_backlog(client: Client, s: Settings) -> int:
    """Workflow tasks waiting on the journeys' task queue (Temporal's own statistics)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=s.temporal_namespace,
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    return response.stats.approximate_backlog_count


async def until_worked_off(client: Client, s: Settings, timeout: float) -> None:
    """Until the worker has taken every workflow task the bridge's signals made: a journey is
    open once its first task is done, not when its signal is delivered (a 100,000 burst leaves
    tens of thousands of first tasks queued after the bridge has drained: issue #20)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3:  # the statistics are approximate: zero three times, a second apart
        quiet = quiet + 1 if await workflow_backlog(client, s) == 0 else 0
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not work off the journeys' tasks in time")
        await asyncio.sleep(1)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def alert_delays(
    s: Settings, run: str, due: dict[str, datetime], expected: int
) -> list[float]:
    """Seconds from each deadline to its alert row, once all are there (or time is up)."""
    engine = make_engine(s, "journeys")
    sessions = make_sessionmaker(engine)
    delays: list[float] = []
    wait_until = time.monotonic() + RULES.settle_seconds + 240
    try:
        while time.monotonic() < wait_until:
            async with unit_of_work(sessions) as session:
                rows = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT a.patient_id, c.recorded_at FROM journey_alert a JOIN "
                            "journey_alert_change c ON c.alert_id = a.alert_id AND c.seq = 1 "
                            "WHERE a.patient_id LIKE :p AND a.rule = 'stalled.not_booked'"
                        ).bindparams(p=f"pt_b{run}_d%")
                    )
                ).all()
            delays = [(r.recorded_at - due[r.patient_id]).total_seconds() for r in rows]
            if len(rows) >= expected:
                break
            await asyncio.sleep(1)
    finally:
        await engine.dispose()
    return delays


async def unanswered(client: Client, patients: list[str]) -> int:
    """How many of these journeys do not answer a query (a failed workflow task)."""
    failures = 0

    async def one(p: str) -> None:
        nonlocal failures
        try:
            await client.get_workflow_handle(workflow_id(p)).query(PatientJourney.journey)
        except Exception:  # noqa: BLE001 - counted, and the bench refuses its figures
            failures += 1

    await bounded(50, (one(p) for p in patients))
    return failures


def accepted(patient: str, referral_id: str, at: datetime) -> bytes:
    data = ReferralAccepted(
        referral_id=referral_id,
        from_org="GP-BENCH",
        to_org="PAIN-RTH",
        to_service_id="svc-pain-mgmt-programme",
        service_category="pain_management_programme",
        reason_codes=["279039007"],
        priority="routine",
        state="accepted",
        previous_state="submitted",
    )
    return event_bytes(make_event(data, subject=patient, time=at).model_dump(mode="json"))


#: the Waymark processes the bench starts (and stops again, however it ends)
PARTS = ("journeys-worker", "journeys-bridge", "journeys-relay")


async def main() -> int:
    """The figures, or FAILED and why; 0 only when every figure was measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--journeys", type=int, default=10000)
    parser.add_argument("--deadlines", type=int, default=100)
    # every journey is asked (a failed workflow task fails its query); fewer for a 100,000 run
    parser.add_argument("--queries", type=int, default=10_000_000)
    # journeys queried while their first tasks wait in the burst's backlog, as a coordinator
    # opening timelines during a backlog does (how HAZ-100 split journeys); the worker is then
    # restarted before the final queries, so every journey queried replays its history
    parser.add_argument("--queries-in-burst", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    s = get_settings()
    await stack.up(s, infra_only=True)
    try:
        for name in PARTS:
            stack.part_by_name(name).stop(s)  # a fresh worker: an empty workflow cache
            await stack.part_by_name(name).start(s)
        return await measure(s, args)
    except Exception as exc:  # noqa: BLE001 - any error: no figures, a failing exit
        print(f"FAILED, no figures: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for name in PARTS:
            stack.part_by_name(name).stop(s)


async def measure(s: Settings, args: argparse.Namespace) -> int:
    worker_pid = stack.read_pid(stack.part_by_name("journeys-worker").pid_file(s))
    assert worker_pid is not None
    client = await connect_temporal(s)
    run = uuid.uuid4().hex[:6]
    await until_drained(s, 600)  # anything left from an earlier run

    # the worker before it holds any journey of this run (its cache: 1,000 at most)
    rss_before = rss_mb(worker_pid)
    # 1. raw signals vs signals through Kafka and the bridge. The baseline is Temporal as it
    # comes, without Waymark's payload encryption, so the ratio includes what the codec costs
    raw_rate = await raw_signals(await connect_temporal(s, encrypted=False), args.signals)
    direct_rate = await direct_signals(client, args.signals, run)
    await until_worked_off(client, s, 600)  # their first tasks done before the bridge's run
    now = datetime.now(UTC)
    msgs = [(f"pt_b{run}_s{i}", submitted(f"pt_b{run}_s{i}", now)) for i in range(args.signals)]
    await produce(s, msgs)
    t0 = time.perf_counter()
    await until_drained(s, 600)
    bridge_rate = args.signals / (time.perf_counter() - t0)

    # 2 + 4. N open journeys in a burst, and the deadline -> alert delay during it. The
    # deadline journeys go first on every partition; their deadlines fall after their own
    # settle period, while the burst's journeys are being started and their first timers
    # fire (a deadline measured on a quiet worker says nothing about a burst: issue #20)
    deadline0 = (datetime.now(UTC) + timedelta(seconds=RULES.settle_seconds + 30)).replace(
        microsecond=0
    )
    patients = []
    msgs = []
    booking = timedelta(weeks=RULES.booking_weeks_default)
    for i in range(args.deadlines):
        # accepted exactly `booking` weeks before its deadline: "accepted but not booked"
        deadline = deadline0 + timedelta(milliseconds=200 * i)
        p = f"pt_b{run}_d{i}"
        rid = str(uuid.uuid4())
        patients.append((p, deadline))
        msgs.append((p, submitted(p, deadline - booking - timedelta(days=1), referral_id=rid)))
        msgs.append((p, accepted(p, rid, deadline - booking)))
    msgs += [
        (f"pt_b{run}_j{i}", submitted(f"pt_b{run}_j{i}", datetime.now(UTC)))
        for i in range(args.journeys)
    ]
    t0 = time.perf_counter()
    await produce(s, msgs)
    in_burst = None
    asked: list[str] = []
    if args.queries_in_burst:
        step = max(1, args.journeys // args.queries_in_burst)
        asked = [f"pt_b{run}_j{i}" for i in range(args.journeys - 1, -1, -step)]
        asked = asked[: args.queries_in_burst]
        in_burst = asyncio.create_task(unanswered(client, asked))
    await until_drained(s, 3600)
    await until_worked_off(client, s, 7200)
    journeys_s = time.perf_counter() - t0
    broken_in_burst = await in_burst if in_burst is not None else 0
    burst_load = os.getloadavg()[0]
    delays = await alert_delays(s, run, dict(patients), args.deadlines)
    # 3. the burst's journeys are all waiting on their timers (the earlier code's settle timers
    # have fired by now): the worker's memory with its cache full
    await asyncio.sleep(max(0.0, RULES.settle_seconds + 30 - (time.perf_counter() - t0)))
    rss_after = rss_mb(worker_pid)
    running = (
        await client.count_workflows(
            f"WorkflowType = 'PatientJourney' AND ExecutionStatus = 'Running' "
            f"AND WorkflowId STARTS_WITH 'journey-pt_b{run}_j'"
        )
    ).count
    failed = (
        await client.count_workflows(
            f"WorkflowType = 'PatientJourney' AND ExecutionStatus != 'Running' "
            f"AND WorkflowId STARTS_WITH 'journey-pt_b{run}'"
        )
    ).count
    started = 2 * args.signals + args.journeys + args.deadlines
    cached = min(started, s.journeys_worker_max_cached_workflows)
    # a journey whose workflow task fails stays "Running": ask each one (a query fails then)
    if args.queries_in_burst:  # an empty cache: every journey queried replays its history
        stack.part_by_name("journeys-worker").stop(s)
        await stack.part_by_name("journeys-worker").start(s)
    sample = range(0, args.journeys, max(1, args.journeys // args.queries))
    # the sample, and every journey queried during the burst: those are the ones a query
    # waiting on their first task could have left unreplayable (HAZ-100)
    final = sorted({f"pt_b{run}_j{i}" for i in sample} | set(asked))
    broken = await unanswered(client, final)
    server_rss = rss_mb(stack.read_pid(s.home / "run" / "temporal.pid") or 0)
    server_disk = sum(f.stat().st_size for f in (s.home / "temporal").glob("temporal.db*"))

    errors = {
        "journeys not running": failed,
        "journeys not answering a query (a failed task)": broken,
        "deadline alerts missing": args.deadlines - len(delays),
    }
    if any(errors.values()):
        # a bench that swallows errors lies: no ratio when anything failed
        print("FAILED, no figures: " + ", ".join(f"{k} {v}" for k, v in errors.items() if v))
        return 1
    print(f"raw signal-with-start to a trivial workflow (50 in flight): {raw_rate:8.0f} /s")
    print(
        f"signal-with-start straight to PatientJourney (50 in flight):{direct_rate:8.0f} /s"
        f"   ratio {direct_rate / raw_rate:.2f} (the journey's own first task)"
    )
    print(
        f"referral events through Kafka + bridge into PatientJourney: {bridge_rate:8.0f} /s"
        f"   ratio {bridge_rate / raw_rate:.2f}; to the straight signals "
        f"{bridge_rate / direct_rate:.2f} (what Kafka and the bridge cost)"
    )
    print(
        f"{args.journeys} journeys started and signalled through Kafka: {journeys_s:.1f} s "
        f"({args.journeys / journeys_s:.0f}/s); running {running}, not running {failed}"
    )
    print(
        f"worker RSS {rss_before:.0f} MB -> {rss_after:.0f} MB: "
        f"{(rss_after - rss_before) / cached * 1000:.0f} MB per 1,000 cached journeys "
        f"({cached} cached of {started} started)"
    )
    print(
        f"Temporal dev server RSS {server_rss:.0f} MB, its SQLite files "
        f"{server_disk / 2**20:.0f} MB (every namespace); {len(final)} journeys queried"
    )
    if args.queries_in_burst:
        # a query waiting on a queued first task may time out (not a failure of the journey);
        # the final queries, after the worker's restart, are what must all be answered
        print(
            f"{args.queries_in_burst} journeys queried during the burst "
            f"({broken_in_burst} unanswered then), all queried again after a worker restart"
        )
    q = statistics.quantiles(delays, n=100)
    print(
        f"deadline -> alert row delay over {len(delays)} timers during the burst "
        f"(load average {burst_load:.1f}): p50 {q[49]:.2f} s, p99 {q[98]:.2f} s"
    )
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    os._exit(code)  # the Temporal runtime's threads can abort a finalising interpreter
