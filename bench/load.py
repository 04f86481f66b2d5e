"""A mixed workload held on a running Waymark stack for a bounded time, over HTTP like any
client: per-endpoint throughput and latency (p50, p99), errors, then the consumer lag and the
outbox backlog the load leaves behind and how long they take to drain.

The mix (weights configurable): create a referral (Idempotency-Key); move referrals along
their lifecycle (accept, book, attend, discharge, or return to the referrer; If-Match);
search the directory; read care plans (created through the API as needed); list the
coordinators' alert inbox and act on alerts (acknowledge, assign, snooze, resolve; If-Match
and Idempotency-Key). Each virtual user owns its referrals, its care plans and a hash
partition of the alerts, so no request races another virtual user's: any non-2xx answer is
an error. A discharged or returned patient is sometimes referred again to the same service,
which the journeys rightly see as a loop and raise an alert for, so the inbox keeps filling
while the load empties it.

Raw baselines in the same run, at the same concurrency: GET /health round-robin over the same
four APIs (the same HTTP stack and one `SELECT 1`, no token, no ORM, no audit), and
single-row INSERT transactions on an asyncpg pool (the database write alone).

At the end: each consumer group's lag per topic (committed offsets against end offsets)
right after the load stops, the outbox rows the load wrote and not yet published, and the
time until every group's lag and that backlog are 0 (and stay 0 for a moment).

Run on demand: `python -m bench.load [--duration 60] [--concurrency 16] [--stop]`. Works as
the `load` instance (database waymark_load, topics load.*, namespace waymark-load, APIs on
18801+), starting its stack if it is not running; prepares its own directory services, the
demo directory (`--demo-directory`) and a synthetic population whose journeys raise alerts
(`--population`). Results: a table on stdout and JSON under bench/results/.

`run_load` is the engine; tests/load/test_load_smoke.py runs it briefly on the test session's
stack (asserting no errors, every endpoint exercised, lag and backlog drained; no timings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.auth import mint_token
from shared.kafka_security import client_options
from shared.settings import API_SERVICES, SERVICE_SCHEMAS, Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: the bench's own instance, so it never touches dev or test data
INSTANCE_ENV = {
    "WAYMARK_INSTANCE": "load",
    "WAYMARK_DB_NAME": "waymark_load",
    "WAYMARK_TOPIC_PREFIX": "load.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-load",
    "WAYMARK_API_PORT_BASE": "18800",
}

logger = logging.getLogger(__name__)

# --- the endpoints and the mix --------------------------------------------------------------

CREATE_REFERRAL = "POST /referrals"
TRANSITION = "POST /referrals/{id}/{action}"
SEARCH = "GET /services"
CREATE_PLAN = "POST /care-plans"
READ_PLAN = "GET /care-plans/{id}"
LIST_ALERTS = "GET /alerts"
ALERT_ACTION = "POST /alerts/{id}/{action}"
HEALTH = "GET /health"
RAW_INSERT = "raw asyncpg INSERT"

#: the operations a virtual user picks from, by weight, and the endpoints each one calls
OPERATIONS: dict[str, tuple[str, ...]] = {
    "create_referral": (CREATE_REFERRAL,),
    "transition": (TRANSITION,),
    "directory_search": (SEARCH,),
    "care_plan": (CREATE_PLAN, READ_PLAN),  # a plan is created when the user has none to read
    "alert_list": (LIST_ALERTS,),
    "alert_action": (ALERT_ACTION,),
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "create_referral": 2,
    "transition": 4,
    "directory_search": 3,
    "care_plan": 3,
    "alert_list": 1,
    "alert_action": 2,
}
#: write endpoints, compared with the raw INSERT
WRITES = (CREATE_REFERRAL, TRANSITION, CREATE_PLAN, ALERT_ACTION)


#: each consumer group of the stack and the topics it reads (group ids: the consumer names)
def consumer_groups() -> dict[str, tuple[str, ...]]:
    from services.care_plans.consumers import CONSUMER_NAME as CARE_PLANS_CONSUMER
    from services.notifications.consumers import CONSUMER_NAME as NOTIFICATIONS_CONSUMER
    from services.notifications.consumers import TOPICS as NOTIFICATIONS_TOPICS
    from services.referrals.consumers import CONSUMER_NAME as REFERRALS_CONSUMER
    from shared.topics import CARE_PLANS, DIRECTORY, NOTIFICATIONS, REFERRALS
    from workflows.journeys.bridge import CONSUMER_NAME as BRIDGE

    return {
        REFERRALS_CONSUMER: (DIRECTORY,),
        CARE_PLANS_CONSUMER: (REFERRALS,),
        NOTIFICATIONS_CONSUMER: tuple(NOTIFICATIONS_TOPICS),
        BRIDGE: (REFERRALS, CARE_PLANS, NOTIFICATIONS),
    }


class LoadError(RuntimeError):
    """The load could not be prepared (not a measurement: the stack is not usable)."""


# --- measurements ---------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class EndpointStats:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, every answer
    statuses: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)

    def record(self, seconds: float, status: str, action: str | None = None) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1
        if action:
            self.actions[action] += 1

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.startswith("2"))

    def summary(self, window: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "count": self.count,
            "per_second": round(self.count / window, 2) if window else 0,
            "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "actions": dict(self.actions),
        }


class Recorder:
    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointStats] = {}
        self.error_samples: list[dict[str, str]] = []

    def record(
        self,
        endpoint: str,
        seconds: float,
        status: str,
        *,
        action: str | None = None,
        body: str = "",
    ) -> None:
        stats = self.endpoints.setdefault(endpoint, EndpointStats(endpoint))
        stats.record(seconds, status, action)
        if not status.startswith("2") and len(self.error_samples) < 20:
            self.error_samples.append(
                {"endpoint": endpoint, "action": action or "", "status": status, "body": body[:400]}
            )


@dataclass
class LoadReport:
    instance: str
    started_at: str
    duration_s: float  # the measured window: from the start until the last request ended
    concurrency: int
    weights: dict[str, float]
    endpoints: dict[str, dict[str, Any]]
    baseline: dict[str, dict[str, Any]]
    baseline_seconds: float
    error_samples: list[dict[str, str]]
    lag_at_end: dict[str, dict[str, int]]
    outbox_backlog_at_end: dict[str, int]
    drained: bool
    drain_seconds: float | None
    lag_after_drain: dict[str, dict[str, int]]
    outbox_backlog_after_drain: dict[str, int]
    max_lag_during_load: int
    client_cpu_share: float  # of one core, used by this driver during the mixed load
    cpu_cores_by_part: dict[str, float] = field(default_factory=dict)  # during the mixed load
    prepared: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(e["count"] for e in self.endpoints.values())

    @property
    def errors(self) -> int:
        return sum(e["errors"] for e in self.endpoints.values())

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def ratios(self) -> dict[str, Any]:
        """The mix against the raw baselines of the same run."""
        health, raw = self.baseline.get(HEALTH), self.baseline.get(RAW_INSERT)
        out: dict[str, Any] = {}
        if health and health["per_second"]:
            out["throughput_vs_health"] = round(self.throughput / health["per_second"], 3)
        per: dict[str, dict[str, float]] = {}
        for name, e in self.endpoints.items():
            r: dict[str, float] = {}
            if health and health["p50_ms"]:
                r["p50_vs_health"] = round(e["p50_ms"] / health["p50_ms"], 2)
                r["p99_vs_health"] = round(e["p99_ms"] / health["p99_ms"], 2)
            if raw and raw["p50_ms"] and name in WRITES:
                r["p50_vs_raw_insert"] = round(e["p50_ms"] / raw["p50_ms"], 2)
            per[name] = r
        out["endpoints"] = per
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 2),
            "concurrency": self.concurrency,
            "weights": self.weights,
            "requests": self.requests,
            "errors": self.errors,
            "throughput_per_s": round(self.throughput, 2),
            "endpoints": self.endpoints,
            "baseline_seconds": self.baseline_seconds,
            "baseline": self.baseline,
            "ratios": self.ratios(),
            "error_samples": self.error_samples,
            "lag_at_end": self.lag_at_end,
            "outbox_backlog_at_end": self.outbox_backlog_at_end,
            "drained": self.drained,
            "drain_seconds": self.drain_seconds,
            "lag_after_drain": self.lag_after_drain,
            "outbox_backlog_after_drain": self.outbox_backlog_after_drain,
            "max_lag_during_load": self.max_lag_during_load,
            "client_cpu_share": round(self.client_cpu_share, 2),
            "cpu_cores_by_part": self.cpu_cores_by_part,
            "prepared": self.prepared,
            "machine": self.machine,
        }


def total_lag(lag: dict[str, dict[str, int]]) -> int:
    return sum(n for topics in lag.values() for n in topics.values())


# --- where the CPU goes ---------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: its parent and the CPU seconds it has used (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state, ppid, ..., utime (14th field), stime (15th)
        out[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_part(settings: Settings) -> dict[str, float]:
    """CPU seconds used so far by each part of the stack (a process and its children, e.g.
    PostgreSQL's backends) and by this driver. PostgreSQL, Kafka and Temporal serve every
    instance on the machine; the Waymark processes are this instance's own."""
    from devtools import stack

    if not Path("/proc/self/stat").exists():
        return {}
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> float:
        return procs.get(pid, (0, 0.0))[1] + sum(tree(c) for c in children.get(pid, []))

    out: dict[str, float] = {}
    for part in stack.parts():
        pid_file = part.pid_file(settings)
        pid = stack.read_pid(pid_file) if pid_file != Path() else None
        if pid is not None:
            out[part.name] = tree(pid)
    out["load driver"] = time.process_time()
    return out


# --- consumer lag and outbox backlog --------------------------------------------------------


class LagProbe:
    """Each consumer group's lag per topic: end offsets minus committed offsets (a partition
    the group never committed counts from its beginning, as the consumers start at
    `earliest`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.groups = {
            settings.topic(g): tuple(settings.topic(t) for t in topics)
            for g, topics in consumer_groups().items()
        }
        self.admin = AIOKafkaAdminClient(**client_options(settings))
        self.consumer = AIOKafkaConsumer(**client_options(settings))
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        topics = sorted({t for ts in self.groups.values() for t in ts})
        for desc in await self.admin.describe_topics(topics):
            self.partitions[desc["topic"]] = [
                TopicPartition(desc["topic"], p["partition"]) for p in desc["partitions"]
            ]

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> dict[str, dict[str, int]]:
        every = [tp for tps in self.partitions.values() for tp in tps]
        ends = await self.consumer.end_offsets(every)
        begins = await self.consumer.beginning_offsets(every)
        out: dict[str, dict[str, int]] = {}
        for group, topics in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            out[group] = {}
            for topic in topics:
                n = 0
                for tp in self.partitions[topic]:
                    c = committed.get(tp)
                    done = c.offset if c is not None and c.offset >= 0 else begins[tp]
                    n += max(0, ends[tp] - done)
                out[group][topic] = n
        return out


class OutboxProbe:
    """Outbox rows written since a mark and not yet published, per schema (rows parked after
    failed attempts count: they are not published either)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: asyncpg.Connection | None = None
        self.marks: dict[str, int] = {}

    async def start(self) -> None:
        s = self.settings
        self.conn = await asyncpg.connect(
            host=s.pg_host,
            port=s.pg_port,
            user=s.pg_user,
            password=s.pg_credentials("owner")[1],
            database=s.db_name,
        )

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def mark(self) -> None:
        assert self.conn is not None
        self.marks = {
            schema: await self.conn.fetchval(f'SELECT coalesce(max(seq), 0) FROM "{schema}".outbox')
            for schema in SERVICE_SCHEMAS
        }

    async def backlog(self) -> dict[str, int]:
        assert self.conn is not None
        return {
            schema: await self.conn.fetchval(
                f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL AND seq > $1',
                self.marks.get(schema, 0),
            )
            for schema in SERVICE_SCHEMAS
        }


async def wait_drained(
    lag: LagProbe,
    outbox: OutboxProbe,
    *,
    timeout: float,
    stable: float = 2.0,
    interval: float = 0.5,
) -> tuple[float | None, dict[str, dict[str, int]], dict[str, int]]:
    """Seconds until every group's lag and the outbox backlog are 0 and stay 0 for `stable`
    seconds (a zero between two hops of an event is not the end), or None at the deadline;
    with the last readings."""
    t0 = time.monotonic()
    zero_since: float | None = None
    while True:
        now_lag, now_backlog = await lag.lag(), await outbox.backlog()
        now = time.monotonic()
        if total_lag(now_lag) == 0 and sum(now_backlog.values()) == 0:
            zero_since = zero_since if zero_since is not None else now
            if now - zero_since >= stable:
                return zero_since - t0, now_lag, now_backlog
        else:
            zero_since = None
        if now - t0 > timeout:
            return None, now_lag, now_backlog
        await asyncio.sleep(interval)


# --- what the run refers to -----------------------------------------------------------------


def nhs_number(n: int) -> str | None:
    """999nnnnnnC: the 999 range NHS England keeps for test data; None when n has no valid
    Modulus 11 check digit."""
    body = f"999{n:06d}"
    total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return None if check == 10 else body + str(check)


@dataclass
class RunContext:
    settings: Settings
    run: str  # a short id: this run's organisations, services and people are its own
    concurrency: int
    alert_scope: str  # "org": only alerts of this run's referrals; "all": the whole inbox
    rng: random.Random
    receiver: str = ""
    services: list[str] = field(default_factory=list)
    _next_person: int = 0
    _person_base: int = 0

    def __post_init__(self) -> None:
        self.receiver = f"LDR-{self.run}"
        self._person_base = self.rng.randrange(100_000, 800_000)

    def url(self, service: str, path: str) -> str:
        return f"{self.settings.api_url(service)}{path}"

    def next_nhs_number(self) -> str:
        """A person nobody in this run (nor, very likely, an earlier one) has been."""
        while True:
            self._next_person += 1
            number = nhs_number(self._person_base + self._next_person)
            if number:
                return number

    def token(self, *, sub: str, role: str, org: str) -> dict[str, str]:
        t = mint_token(
            self.settings,
            sub=sub,
            roles=[role],
            org=org,
            ics=self.settings.ics,
            ttl=timedelta(hours=2),
        )
        return {"Authorization": f"Bearer {t}"}


SERVICE_CATEGORIES = (
    "pain_management_programme",
    "talking_therapies_ltc",
    "msk_physiotherapy",
    "social_prescribing",
)


async def create_directory_services(ctx: RunContext) -> list[str]:
    """This run's provider and its published services, through the directory API."""
    from services.directory.data.generate_postcodes import read as read_postcodes
    from services.directory.demo import DemoService, service_body
    from services.directory.domain import Category

    postcodes = read_postcodes()
    coordinates = {p[0]: (p[1], p[2]) for p in postcodes}
    staff = ctx.token(sub=f"load-staff-{ctx.run}", role="service_staff", org=ctx.receiver)
    ids = []
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.put(
            ctx.url("directory", f"/organizations/{ctx.receiver}"),
            headers=staff,
            json={
                "name": f"Load provider {ctx.run}",
                "description": "A synthetic provider of the load bench.",
            },
        )
        if r.status_code not in (200, 201):
            raise LoadError(f"directory refused the provider: {r.status_code} {r.text[:300]}")
        for i, category in enumerate(SERVICE_CATEGORIES):
            sid = f"svc-load-{ctx.run.lower()}-{category.replace('_', '-')}"
            svc = DemoService(
                sid,
                ctx.receiver,
                Category(category),
                f"Load {category.replace('_', ' ')} {ctx.run}",
                "Synthetic service of the load bench: back pain and low mood.",
                ("persistent_pain", "mental_health"),
                ("in_person", "video"),
                (postcodes[i * 7][0],),
                self_referral=i % 2 == 0,
                waiting_weeks=4,
            )
            headers = {**staff, "Idempotency-Key": f"load-svc-{sid}"}
            r = await http.post(
                ctx.url("directory", "/services"),
                headers=headers,
                json=service_body(svc, coordinates),
            )
            if r.status_code != 201:
                raise LoadError(f"directory refused {sid}: {r.status_code} {r.text[:300]}")
            r = await http.post(
                ctx.url("directory", f"/services/{sid}/publish"),
                headers={**staff, "Idempotency-Key": f"load-pub-{sid}"},
            )
            if r.status_code != 200:
                raise LoadError(f"directory did not publish {sid}: {r.status_code} {r.text[:300]}")
            ids.append(sid)
    return ids


async def wait_for_referrals_replica(ctx: RunContext, timeout: float = 120) -> None:
    """The referrals service learns of new services from the directory's events (Kafka):
    wait until it accepts a referral to each of them."""
    clinician = ctx.token(sub=f"load-probe-{ctx.run}", role="clinician", org=f"LGP-{ctx.run}")
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=30) as http:
        for sid in ctx.services:
            body = referral_body(ctx.next_nhs_number(), "Probe", sid)
            while True:
                r = await http.post(
                    ctx.url("referrals", "/referrals"),
                    json=body,
                    headers={**clinician, "Idempotency-Key": str(uuid.uuid4())},
                )
                if r.status_code == 201:
                    break
                if r.status_code != 422 or "directory" not in r.text or time.monotonic() > deadline:
                    raise LoadError(
                        f"referrals never accepted {sid}: {r.status_code} {r.text[:300]}"
                    )
                await asyncio.sleep(0.5)


def referral_body(nhs: str, family_name: str, service_id: str) -> dict[str, Any]:
    return {
        "patient": {
            "nhs_number": nhs,
            "given_name": "Load",
            "family_name": family_name,
            "birth_date": "1971-06-15",
        },
        "source": "gp",
        "from_practitioner": "Dr Load",
        "to_service_id": service_id,
        "reason_codes": ["279039007", "35489007"],
        "clinical_summary": "Persistent low back pain for a year; low mood.",
        "consent_to_referral": True,
    }


# --- a virtual user -------------------------------------------------------------------------


@dataclass
class Patient:
    nhs: str
    family_name: str
    last_service: str | None = None
    open_referrals: int = 0
    referred_at: float = 0.0  # monotonic time of the first referral (0: not yet referred)
    has_plan: bool = False


@dataclass
class Referral:
    id: str
    patient: Patient
    service_id: str
    state: str
    etag: str


class VirtualUser:
    """One person at a keyboard per role it plays: a GP practice's clinician (its own
    practice), the receiving provider's staff (for its own referrals only) and an ICS
    coordinator (for its share of the alerts). One request at a time, no think time."""

    REREFER = 0.3  # a create that refers a patient whose referral ended, to the same service
    RETURN = 0.15  # a triage that returns the referral to the referrer instead of accepting
    RESOLVE = 0.5  # a snoozed alert resolved (else acknowledged again)
    MAX_PLANS = 20

    def __init__(self, ctx: RunContext, index: int, recorder: Recorder) -> None:
        self.ctx, self.index, self.rec = ctx, index, recorder
        self.rng = random.Random(ctx.rng.random())
        self.measuring = False
        self.practice = f"LGP-{ctx.run}-{index:02d}"
        self.clinician = ctx.token(
            sub=f"load-gp-{ctx.run}-{index}", role="clinician", org=self.practice
        )
        self.staff = ctx.token(
            sub=f"load-staff-{ctx.run}-{index}", role="service_staff", org=ctx.receiver
        )
        self.coordinator_id = f"load-coord-{ctx.run}-{index}"
        self.coordinator = ctx.token(
            sub=self.coordinator_id, role="coordinator", org=f"ICB-{ctx.run}"
        )
        self.colleague = f"load-coord-{ctx.run}-{index}-b"
        self.patients: list[Patient] = []
        self.referrals: dict[str, Referral] = {}
        self.plans: list[str] = []
        self.alerts: dict[str, dict[str, Any]] = {}  # owned, settled, from the last list
        self.echo: dict[str, int] = {}  # alert id -> its seq when we acted; the journey's
        # own alert event (a higher seq) is awaited before acting on it again
        self.alert_total = 0
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=8))

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, endpoint: str, method: str, url: str, *, action: str | None = None, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            if not self.measuring:
                raise LoadError(f"{endpoint} while preparing: {exc!r}") from exc
            self.rec.record(
                endpoint,
                time.perf_counter() - t0,
                f"exc:{type(exc).__name__}",
                action=action,
                body=str(exc),
            )
            return None
        ok = 200 <= r.status_code < 300
        if self.measuring:
            self.rec.record(
                endpoint,
                time.perf_counter() - t0,
                str(r.status_code),
                action=action,
                body="" if ok else r.text,
            )
        elif not ok:
            raise LoadError(
                f"{endpoint} {action or ''} while preparing: {r.status_code} {r.text[:300]}"
            )
        return r if ok else None

    # --- referrals ----------------------------------------------------------------------

    def new_patient(self) -> Patient:
        p = Patient(
            self.ctx.next_nhs_number(),
            f"Synthetic-{self.ctx.run}-{self.index}-{len(self.patients)}",
        )
        self.patients.append(p)
        return p

    async def create_referral(
        self, patient: Patient | None = None, service_id: str | None = None
    ) -> Referral | None:
        if patient is None:
            ended = [p for p in self.patients if p.open_referrals == 0 and p.last_service]
            if ended and self.rng.random() < self.REREFER:
                patient = self.rng.choice(ended)
                service_id = patient.last_service
            else:
                patient = self.new_patient()
        service_id = service_id or self.rng.choice(self.ctx.services)
        r = await self.call(
            CREATE_REFERRAL,
            "POST",
            self.ctx.url("referrals", "/referrals"),
            json=referral_body(patient.nhs, patient.family_name, service_id),
            headers={**self.clinician, "Idempotency-Key": str(uuid.uuid4())},
        )
        if r is None:
            return None
        body = r.json()
        ref = Referral(body["id"], patient, service_id, body["state"], r.headers["etag"])
        patient.open_referrals += 1
        patient.last_service = service_id
        patient.referred_at = patient.referred_at or time.monotonic()
        self.referrals[ref.id] = ref
        return ref

    def next_step(self, ref: Referral) -> tuple[str, dict[str, Any]]:
        if ref.state == "submitted":
            if self.rng.random() < self.RETURN:
                return "return", {
                    "reason_code": "advice-and-guidance-given",
                    "note": "Manage in primary care for now.",
                }
            return "accept", {}
        if ref.state == "accepted":
            when = datetime.now(UTC) + timedelta(days=self.rng.randint(3, 30))
            return "book", {"appointment_at": when.isoformat()}
        if ref.state == "booked":
            return "attend", {}
        return "discharge", {"reason_code": "treatment-completed"}

    async def transition(self, ref: Referral | None = None, action: str | None = None) -> None:
        if ref is None:
            if not self.referrals:
                await self.create_referral()
                return
            ref = self.referrals[self.rng.choice(list(self.referrals))]
        step, body = self.next_step(ref)
        if action is not None:
            step = action
            body = {"reason_code": "insufficient-information"} if action == "return" else {}
        r = await self.call(
            TRANSITION,
            "POST",
            self.ctx.url("referrals", f"/referrals/{ref.id}/{step}"),
            action=step,
            json=body,
            headers={**self.staff, "If-Match": ref.etag, "Idempotency-Key": str(uuid.uuid4())},
        )
        if r is None:  # its state is unknown now: leave it alone rather than err again
            self.referrals.pop(ref.id, None)
            ref.patient.open_referrals -= 1
            return
        ref.state, ref.etag = r.json()["state"], r.headers["etag"]
        if ref.state in ("discharged", "returned", "rejected", "cancelled"):
            del self.referrals[ref.id]
            ref.patient.open_referrals -= 1

    # --- directory ----------------------------------------------------------------------

    SEARCHES: tuple[list[tuple[str, Any]], ...] = (
        [("q", "back pain low mood"), ("postcode", "WY1 0BG"), ("radius_km", 15)],
        [
            ("category", "msk_physiotherapy"),
            ("category", "talking_therapies_ltc"),
            ("condition", "persistent_pain"),
            ("self_referral", "true"),
            ("postcode", "WY1 0BG"),
            ("radius_km", 20),
            ("sort", "distance"),
        ],
        [("q", "pain management group"), ("page_size", 10)],
        [("condition", "mental_health"), ("delivery_mode", "video"), ("sort", "name")],
    )

    async def directory_search(self) -> None:
        await self.call(
            SEARCH,
            "GET",
            self.ctx.url("directory", "/services"),
            params=self.rng.choice(self.SEARCHES),
            headers=self.clinician,
        )

    # --- care plans ---------------------------------------------------------------------

    async def care_plan(self) -> None:
        if not self.plans or (len(self.plans) < self.MAX_PLANS and self.rng.random() < 0.05):
            await self.create_plan()
            return
        plan = self.rng.choice(self.plans)
        await self.call(
            READ_PLAN,
            "GET",
            self.ctx.url("care_plans", f"/care-plans/{plan}"),
            headers=self.clinician,
        )

    #: a plan is started for a person this user referred at least this long ago, so the
    #: referral has reached the care plans service (the care relationship a plan needs)
    PLAN_AFTER_SECONDS = 5.0

    async def create_plan(self) -> None:
        # a person this user referred (its care relationship): one plan per person
        ready = [
            p
            for p in self.patients
            if not p.has_plan
            and p.referred_at
            and time.monotonic() - p.referred_at >= self.PLAN_AFTER_SECONDS
        ]
        if not ready:
            await self.directory_search()  # nobody to plan for yet: another kind of request
            return
        patient = self.rng.choice(ready)
        patient.has_plan = True
        body = {
            "nhs_number": patient.nhs,
            "consented_organisations": [self.ctx.receiver],
            "reason": "plan agreed at the first conversation",
            "content": {
                "what_matters_to_me": "Walking the dog again without a flare-up.",
                "goals": [{"what": "Walk 20 minutes three times a week"}],
            },
        }
        r = await self.call(
            CREATE_PLAN,
            "POST",
            self.ctx.url("care_plans", "/care-plans"),
            json=body,
            headers={**self.clinician, "Idempotency-Key": str(uuid.uuid4())},
        )
        if r is not None:
            self.plans.append(r.json()["id"])

    # --- alerts -------------------------------------------------------------------------

    def owns(self, alert_id: str) -> bool:
        return zlib.crc32(alert_id.encode()) % self.ctx.concurrency == self.index

    def alert_params(self, limit: int = 50) -> dict[str, Any]:
        offset = self.rng.randrange(0, max(1, self.alert_total - limit + 1))
        params: dict[str, Any] = {"sort": "severity", "limit": limit, "offset": offset}
        if self.ctx.alert_scope == "org":
            params["org"] = self.ctx.receiver
        return params

    async def alert_list(self) -> None:
        r = await self.call(
            LIST_ALERTS,
            "GET",
            self.ctx.url("notifications", "/alerts"),
            params=self.alert_params(),
            headers=self.coordinator,
        )
        if r is None:
            return
        page = r.json()
        self.alert_total = page["total"]
        self.alerts = {}
        for a in page["items"]:
            if not self.owns(a["alert_id"]):
                continue
            acted_at = self.echo.get(a["alert_id"])
            if acted_at is not None and a["seq"] <= acted_at:
                continue  # our last action is not reconciled by the journey yet
            self.echo.pop(a["alert_id"], None)
            self.alerts[a["alert_id"]] = a

    def next_alert_action(self, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if a["status"] in ("open", "escalated"):
            return "acknowledge", {}
        if a["status"] == "acknowledged":
            if a["assignee"] != self.colleague:
                return "assign", {"assignee": self.colleague}
            until = datetime.now(UTC) + timedelta(days=1)
            return "snooze", {"until": until.isoformat()}
        if self.rng.random() < self.RESOLVE:
            return "resolve", {"resolution": "contacted-person"}
        return "acknowledge", {}

    async def alert_action(self) -> None:
        if not self.alerts:
            await self.alert_list()
            if not self.alerts:
                return
        alert_id = self.rng.choice(list(self.alerts))
        a = self.alerts.pop(alert_id)
        action, body = self.next_alert_action(a)
        r = await self.call(
            ALERT_ACTION,
            "POST",
            self.ctx.url("notifications", f"/alerts/{alert_id}/{action}"),
            action=action,
            json=body,
            headers={
                **self.coordinator,
                "If-Match": f'W/"{a["version"]}"',
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        if r is not None:
            self.echo[alert_id] = r.json()["seq"]

    # --- preparing and running ----------------------------------------------------------

    async def prepare(self) -> None:
        """A loop of its own for the inbox: referred, returned without treatment (not enough
        information), referred again to the same service (the journey raises
        looping.re_referral; advice followed by a referral is the designed pathway, no loop)."""
        patient = self.new_patient()
        service = self.ctx.services[self.index % len(self.ctx.services)]
        ref = await self.create_referral(patient, service)
        assert ref is not None
        await self.transition(ref, "return")
        again = await self.create_referral(patient, service)
        assert again is not None
        # kept out of the mix: the mix moving it forward would change the alert under the
        # coordinators' feet (the journey marks a loop progressing), a 412 the bench would
        # count as an error although it is the right answer to a stale If-Match
        del self.referrals[again.id]

    async def run(self, until: float, weights: dict[str, float]) -> None:
        ops: list[Callable[[], Awaitable[Any]]] = [getattr(self, name) for name in weights]
        w = list(weights.values())
        while time.monotonic() < until:
            await self.rng.choices(ops, w)[0]()


# --- baselines ------------------------------------------------------------------------------


async def health_baseline(ctx: RunContext, seconds: float, concurrency: int) -> EndpointStats:
    """GET /health round-robin over the four APIs: the same HTTP path without a token."""
    stats = EndpointStats(HEALTH)
    until = time.monotonic() + seconds

    async def worker(i: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            n = i
            while time.monotonic() < until:
                service = API_SERVICES[n % len(API_SERVICES)]
                n += 1
                t0 = time.perf_counter()
                try:
                    r = await http.get(ctx.url(service, "/health"))
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = f"exc:{type(exc).__name__}"
                stats.record(time.perf_counter() - t0, status)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return stats


async def raw_insert_baseline(ctx: RunContext, seconds: float, concurrency: int) -> EndpointStats:
    """Single-row INSERT transactions (a referral-sized row, committed and fsynced) on an
    asyncpg pool of `concurrency` connections: the database write with nothing around it."""
    s = ctx.settings
    stats = EndpointStats(RAW_INSERT)
    table = f"public.load_raw_{ctx.run.lower()}"
    pool = await asyncpg.create_pool(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_credentials("owner")[1],
        database=s.db_name,
        min_size=concurrency,
        max_size=concurrency,
    )
    try:
        await pool.execute(
            f"CREATE TABLE {table} (id UUID PRIMARY KEY, patient TEXT NOT NULL, "
            "payload JSONB NOT NULL, created_at TIMESTAMPTZ DEFAULT now())"
        )
        payload = json.dumps(referral_body("9990000000", "Raw", "svc-raw"))
        until = time.monotonic() + seconds

        async def worker() -> None:
            async with pool.acquire() as conn:
                while time.monotonic() < until:
                    t0 = time.perf_counter()
                    await conn.execute(
                        f"INSERT INTO {table} (id, patient, payload) VALUES ($1, $2, $3::jsonb)",
                        uuid.uuid4(),
                        "pt_raw",
                        payload,
                    )
                    stats.record(time.perf_counter() - t0, "201")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()
    return stats


# --- the engine -----------------------------------------------------------------------------


async def wait_for_alerts(ctx: RunContext, at_least: int, timeout: float) -> int:
    """Until the inbox holds at least `at_least` open alerts of this run's referrals."""
    headers = ctx.token(sub=f"load-coord-{ctx.run}", role="coordinator", org=f"ICB-{ctx.run}")
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            r = await http.get(
                ctx.url("notifications", "/alerts"),
                headers=headers,
                params={"org": ctx.receiver, "limit": 1},
            )
            r.raise_for_status()
            total = int(r.json()["total"])
            if total >= at_least or time.monotonic() > deadline:
                return total
            await asyncio.sleep(1)


async def run_load(
    settings: Settings,
    *,
    duration: float = 60,
    concurrency: int = 16,
    weights: dict[str, float] | None = None,
    alert_scope: str = "all",
    baseline_seconds: float = 10,
    drain_timeout: float = 600,
    prepare_timeout: float = 180,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> LoadReport:
    """Prepare this run's data, measure the raw baselines, hold the mixed load for `duration`
    seconds with `concurrency` virtual users, then measure the lag and backlog it left and
    wait (at most `drain_timeout`) for them to drain. `alert_scope="org"` acts only on alerts
    of this run's referrals (a shared stack); "all" on the whole inbox (the bench's own)."""
    say = progress or (lambda _m: None)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")
    weights = {k: v for k, v in weights.items() if v > 0}
    rng = random.Random(seed)
    ctx = RunContext(
        settings=settings,
        run=f"{rng.getrandbits(24):06X}",
        concurrency=concurrency,
        alert_scope=alert_scope,
        rng=rng,
    )
    lag, outbox = LagProbe(settings), OutboxProbe(settings)
    await lag.start()
    await outbox.start()
    recorder = Recorder()
    users = [VirtualUser(ctx, i, recorder) for i in range(concurrency)]
    try:
        await outbox.mark()  # what the run writes from here on must be published
        say(f"run {ctx.run}: directory services of its own, through the directory API")
        ctx.services = await create_directory_services(ctx)
        await wait_for_referrals_replica(ctx, prepare_timeout)
        say("a loop alert per virtual user (refer, return untreated, refer again)")
        await asyncio.gather(*(u.prepare() for u in users))
        alerts_ready = await wait_for_alerts(ctx, concurrency, prepare_timeout)
        say(f"{alerts_ready} alerts of this run in the inbox; waiting for a quiet pipeline")
        quiet, _, _ = await wait_drained(lag, outbox, timeout=prepare_timeout)
        if quiet is None:
            logger.warning("the pipeline was not quiet before the load (lag %s)", await lag.lag())

        say(f"baselines: GET /health and raw INSERT, {baseline_seconds:.0f} s each")
        health = await health_baseline(ctx, baseline_seconds, concurrency)
        raw = await raw_insert_baseline(ctx, baseline_seconds, concurrency)

        await outbox.mark()
        for u in users:
            u.measuring = True
        say(f"mixed load: {concurrency} virtual users for {duration:.0f} s")
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        max_lag = 0
        t0 = time.monotonic()
        cpu0 = time.process_time()
        parts0 = cpu_by_part(settings)
        until = t0 + duration
        load = asyncio.gather(*(u.run(until, weights) for u in users))
        while not load.done():
            await asyncio.wait([load], timeout=5)
            if not load.done():
                max_lag = max(max_lag, total_lag(await lag.lag()))
        await load
        window = time.monotonic() - t0
        cpu_share = (time.process_time() - cpu0) / window
        parts1 = cpu_by_part(settings)
        cores = {
            name: round((parts1[name] - parts0[name]) / window, 2)
            for name in parts1
            if name in parts0
        }

        lag_at_end, backlog_at_end = await lag.lag(), await outbox.backlog()
        max_lag = max(max_lag, total_lag(lag_at_end))
        say(
            f"load stopped; lag {total_lag(lag_at_end)}, outbox backlog "
            f"{sum(backlog_at_end.values())}; waiting for them to drain"
        )
        drain, lag_after, backlog_after = await wait_drained(lag, outbox, timeout=drain_timeout)
    finally:
        await asyncio.gather(*(u.close() for u in users))
        await lag.close()
        await outbox.close()

    window_stats = {
        name: stats.summary(window) for name, stats in sorted(recorder.endpoints.items())
    }
    return LoadReport(
        instance=settings.instance,
        started_at=started_at,
        duration_s=window,
        concurrency=concurrency,
        weights=weights,
        endpoints=window_stats,
        baseline={
            HEALTH: health.summary(baseline_seconds),
            RAW_INSERT: raw.summary(baseline_seconds),
        },
        baseline_seconds=baseline_seconds,
        error_samples=recorder.error_samples,
        lag_at_end=lag_at_end,
        outbox_backlog_at_end=backlog_at_end,
        drained=drain is not None,
        drain_seconds=None if drain is None else round(drain, 2),
        lag_after_drain=lag_after,
        outbox_backlog_after_drain=backlog_after,
        max_lag_during_load=max_lag,
        client_cpu_share=cpu_share,
        cpu_cores_by_part=dict(sorted(cores.items(), key=lambda kv: -kv[1])),
        prepared={
            "run": ctx.run,
            "services": ctx.services,
            "receiver": ctx.receiver,
            "alerts_of_run_before_load": alerts_ready,
            "alert_scope": alert_scope,
        },
        machine={
            "host": platform.node(),
            "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
    )


def expected_endpoints(weights: dict[str, float] | None = None) -> set[str]:
    """The endpoints a mix with these weights calls."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    return {e for op, w in weights.items() if w > 0 for e in OPERATIONS[op]}


# --- the table ------------------------------------------------------------------------------


def format_report(report: LoadReport) -> str:
    ratios = report.ratios()
    lines = [
        f"instance {report.instance}; {report.concurrency} virtual users for "
        f"{report.duration_s:.1f} s; machine {report.machine.get('cores')} cores, load "
        f"average at the end {report.machine.get('load_average')}; this driver used "
        f"{report.client_cpu_share:.0%} of a core",
        "",
        f"{'endpoint':<34} {'count':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7}  {'p50/health':>10} {'p99/health':>10} {'p50/INSERT':>10}",
    ]
    for name, e in report.endpoints.items():
        r = ratios["endpoints"].get(name, {})
        lines.append(
            f"{name:<34} {e['count']:>7} {e['per_second']:>8.1f} {e['p50_ms']:>8.1f} "
            f"{e['p99_ms']:>8.1f} {e['errors']:>7}  {r.get('p50_vs_health', 0):>10.1f} "
            f"{r.get('p99_vs_health', 0):>10.1f} "
            + (f"{r['p50_vs_raw_insert']:>10.1f}" if "p50_vs_raw_insert" in r else f"{'':>10}")
        )
    lines.append(
        f"{'all of the mix':<34} {report.requests:>7} {report.throughput:>8.1f} "
        f"{'':>8} {'':>8} {report.errors:>7}"
    )
    for name, e in report.endpoints.items():
        if e["actions"]:
            lines.append(
                f"  {name}: " + ", ".join(f"{a} {n}" for a, n in sorted(e["actions"].items()))
            )
    lines += [
        "",
        f"raw baselines, same run, {report.concurrency} in flight, "
        f"{report.baseline_seconds:.0f} s each:",
    ]
    for name, e in report.baseline.items():
        lines.append(
            f"{name:<34} {e['count']:>7} {e['per_second']:>8.1f} {e['p50_ms']:>8.1f} "
            f"{e['p99_ms']:>8.1f} {e['errors']:>7}"
        )
    if "throughput_vs_health" in ratios:
        lines.append(f"mix throughput / GET /health throughput: {ratios['throughput_vs_health']}")
    if report.cpu_cores_by_part:
        busy = [(k, v) for k, v in report.cpu_cores_by_part.items() if v >= 0.01]
        lines += [
            "",
            f"CPU during the load, in cores (all parts: "
            f"{sum(report.cpu_cores_by_part.values()):.2f}; PostgreSQL, Kafka and "
            "Temporal serve every instance on the machine):",
            "  " + ", ".join(f"{k} {v:.2f}" for k, v in busy),
        ]
    if report.error_samples:
        lines += ["", "errors (first few):"] + [
            f"  {s['endpoint']} {s['action']} -> {s['status']}: {s['body'][:160]}"
            for s in report.error_samples[:5]
        ]
    lines += ["", "consumer lag right after the load (group: topic lag):"]
    for group, topics in report.lag_at_end.items():
        lines.append(f"  {group}: " + ", ".join(f"{t} {n}" for t, n in topics.items()))
    lines.append(
        "outbox rows written during the load, not yet published: "
        + ", ".join(f"{k} {v}" for k, v in report.outbox_backlog_at_end.items())
    )
    lines.append(f"largest total lag sampled during the load: {report.max_lag_during_load}")
    if report.drained:
        lines.append(
            f"drained (every group's lag 0 and outbox backlog 0, held 2 s) "
            f"{report.drain_seconds:.1f} s after the load stopped"
        )
    else:
        lines.append(
            f"NOT drained: lag {report.lag_after_drain}, backlog "
            f"{report.outbox_backlog_after_drain}"
        )
    return "\n".join(lines)


# --- the bench ------------------------------------------------------------------------------


async def seed_population(settings: Settings, people: int, seed: int) -> int:
    """A synthetic population of this run (its own people and event ids) published as
    referral events; its journeys raise loop and stall alerts. Returns the alerts expected."""
    from devtools.synthetic import DEMO_MIX, generate, publish
    from shared.topics import REFERRALS

    journeys = generate(
        people,
        seed=seed,
        now=datetime.now(UTC),
        patient_prefix=f"pt_load{seed}",
        months=12,
        mix=DEMO_MIX,
    )
    await publish(journeys, settings=settings, topic=settings.topic(REFERRALS))
    return sum(len(j.expected_rules) for j in journeys)


async def inbox_total(settings: Settings) -> int:
    token = mint_token(
        settings, sub="load-bench", roles=["coordinator"], org="ICB-LOAD", ics=settings.ics
    )
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(
            f"{settings.api_url('notifications')}/alerts/counts",
            headers={"Authorization": f"Bearer {token}"},
            params=[
                ("status", s) for s in ("open", "acknowledged", "escalated", "snoozed", "resolved")
            ],
        )
        r.raise_for_status()
        return int(r.json()["total"])


def parse_weights(text: str) -> dict[str, float]:
    weights = dict(DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in OPERATIONS:
            raise argparse.ArgumentTypeError(
                f"unknown operation {name!r}; one of {', '.join(OPERATIONS)}"
            )
        weights[name] = float(value)
    return weights


async def main(args: argparse.Namespace) -> int:
    from devtools import stack
    from shared.settings import get_settings

    s = get_settings()
    if args.stop:
        print("stopped: " + ", ".join(stack.down(s, infra=False)))
        return 0
    say = print
    say(f"starting or reusing the {s.instance} stack (APIs on {s.api_port_base + 1}+)")
    await stack.up(s)
    if args.demo_directory:
        from services.directory.demo import seed_directory

        n = len(await asyncio.to_thread(seed_directory, s))
        say(f"demo directory: {n} services")
    if args.population:
        before = await inbox_total(s)
        seed = random.randrange(1_000_000)
        expected = await seed_population(s, args.population, seed)
        say(
            f"population of {args.population} people published; their journeys raise "
            f"{expected} alerts (loops at once, stalls after the 60 s settle)"
        )
        deadline = time.monotonic() + args.population_wait
        while (now := await inbox_total(s)) < before + expected and time.monotonic() < deadline:
            await asyncio.sleep(2)
        say(f"inbox: {now} alerts ({now - before} new)")
    report = await run_load(
        s,
        duration=args.duration,
        concurrency=args.concurrency,
        weights=args.weights,
        alert_scope="all",
        baseline_seconds=args.baseline,
        drain_timeout=args.drain_timeout,
        progress=say,
    )
    print()
    print(format_report(report))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"load-{datetime.now(UTC):%Y-%m-%d-%H%M}.json"
    data = report.to_json() | {"population": args.population, "demo_directory": args.demo_directory}
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if report.errors == 0 and report.drained else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of mixed load")
    parser.add_argument("--concurrency", type=int, default=16, help="virtual users")
    parser.add_argument(
        "--weights",
        type=parse_weights,
        default=dict(DEFAULT_WEIGHTS),
        help=f"e.g. transition=4,alert_action=0 (operations: {', '.join(OPERATIONS)})",
    )
    parser.add_argument("--baseline", type=float, default=10, help="seconds of each raw baseline")
    parser.add_argument(
        "--population",
        type=int,
        default=500,
        help="people in a synthetic population of this run (0: none)",
    )
    parser.add_argument(
        "--population-wait",
        type=float,
        default=240,
        help="at most this long for the population's alerts",
    )
    parser.add_argument(
        "--demo-directory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="seed the demo directory (85 services)",
    )
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument(
        "--stop",
        action="store_true",
        help="stop this instance's Waymark processes (waymark down --apps-only)",
    )
    args = parser.parse_args()
    for k, v in INSTANCE_ENV.items():
        os.environ.setdefault(k, v)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    code = asyncio.run(main(args))
    sys.stdout.flush()
    # the Temporal runtime's threads (the stack's probes) can abort a finalising interpreter
    os._exit(code)


if __name__ == "__main__":
    cli()
