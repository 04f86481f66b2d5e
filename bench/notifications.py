"""Partner webhook deliveries per second: the dispatcher's WebhookSender against a raw httpx
POST loop, to the same local receiver, with the same payload and concurrency, in the same run.

  Waymark: N `webhook_delivery` rows (committed beforehand, as the consumer writes them)
           spread over P partner subscriptions -> WebhookSender in this process (claims with
           a lease, Standard Webhooks signing, POST, attempt + outcome recorded in PostgreSQL
           in batches), concurrency C in all, C/P per partner (the production settings are
           64 in all and 4 per partner: 16 partners)
  raw:     C httpx workers POSTing the same CloudEvent bytes, nothing signed or recorded;
           once with one client per partner (as the sender pools connections) and once with
           a single shared client, which slows down sharply at high concurrency

The receiver is a bare ASGI app (answers 200 at once) in its own uvicorn process, so its cost
is the same for every side.

Run on demand: `python bench/notifications.py [--deliveries N] [--concurrency C]
[--partners P] [--repeat R]`. It works as the `bench` instance (database waymark_bench)
unless WAYMARK_* says otherwise, and refuses to run while that instance's own dispatcher is
up (it would take the rows). Record results in bench/RESULTS.md.
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
import json  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The local partners (any path): reads the body, answers 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                await c.post(url, content=b"{}")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _payloads(n: int) -> list[dict[str, Any]]:
    from shared.events.envelope import make_event
    from shared.events.referrals import ReferralSubmitted

    return [
        make_event(
            ReferralSubmitted(
                referral_id=str(uuid.uuid4()),
                from_org="GP-BENCH",
                to_org="PAIN-BENCH",
                to_service_id="svc-bench",
                service_category="pain_management_programme",
                reason_codes=["279039007", "35489007"],
                priority="routine",
                state="submitted",
            ),
            subject=f"pt_{uuid.uuid4().hex}",
        ).model_dump(mode="json")
        for _ in range(n)
    ]


async def _exec(sessions: Any, sql: str, **params: Any) -> Any:
    from shared.db import unit_of_work

    async with unit_of_work(sessions) as session:
        return (await session.exec(text(sql).bindparams(**params))).all()  # type: ignore[call-overload]


async def _new_subscription(sessions: Any, url: str) -> str:
    from services.notifications.webhooks.domain import new_secret

    sid = f"whs_bench_{uuid.uuid4().hex[:12]}"
    await _exec(
        sessions,
        """
        INSERT INTO webhook_subscription (id, org, url, event_types, secret, created_by)
        VALUES (:id, 'BENCH', :url, ARRAY['uk.waymark.referral.submitted'], :secret,
                'bench') RETURNING id""",
        id=sid,
        url=url,
        secret=new_secret(),
    )
    return sid


async def _queue(sessions: Any, sid: str, payloads: list[dict[str, Any]]) -> None:
    for i in range(0, len(payloads), 500):
        chunk = payloads[i : i + 500]
        await _exec(
            sessions,
            """
            INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type,
                                          event_time, payload)
            SELECT 'msg_' || md5(random()::text || e.id), :sid, e.id, e.type, now(), e.p
            FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]),
                        CAST(:ps AS jsonb[])) AS e(id, type, p)
            RETURNING 1""",
            sid=sid,
            ids=[p["id"] for p in chunk],
            types=[p["type"] for p in chunk],
            ps=[json.dumps(p) for p in chunk],
        )


async def _waymark(
    s: Any, sessions: Any, url: str, payloads: list[dict[str, Any]], concurrency: int, partners: int
) -> float:
    from services.notifications.webhooks.sender import WebhookSender

    sids = [await _new_subscription(sessions, f"{url}/{p}") for p in range(partners)]
    for p, sid in enumerate(sids):
        await _queue(sessions, sid, payloads[p::partners])
    # planner statistics as autovacuum keeps them in a running system (a bulk insert just
    # now would otherwise look like an empty table)
    from shared.db import unit_of_work

    async with unit_of_work(sessions) as session:
        await session.exec(text("ANALYZE webhook_delivery"))  # type: ignore[call-overload]
    tuned = s.model_copy(
        update={
            "webhook_concurrency": concurrency,
            "webhook_max_in_flight_per_subscription": -(-concurrency // partners),
        }
    )
    sender = await WebhookSender.create(tuned)
    # the bench's own progress check runs in the measured process: a plain asyncpg statement,
    # not a SQLAlchemy unit of work (that cost ~1 ms of this process's CPU every 50 ms)
    from shared.db import connect

    watch = await connect(s, "notifications", server_settings={"search_path": "notifications"})
    stop, wake = asyncio.Event(), asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(sender.run(stop, wake))
    n = len(payloads)
    try:
        while True:
            row = await watch.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'delivered') AS done, "
                "count(*) FILTER (WHERE status <> 'delivered' AND status <> 'pending') AS bad "
                "FROM webhook_delivery WHERE subscription_id = ANY($1::text[])",
                sids,
            )
            if row["bad"]:
                raise RuntimeError(f"{row['bad']} deliveries did not go through")
            if row["done"] >= n:
                break
            await asyncio.sleep(0.05)
    finally:
        await watch.close()
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    [check] = await _exec(
        sessions,
        """
        SELECT count(*) AS attempts, count(DISTINCT a.delivery_id) AS deliveries
        FROM webhook_attempt a JOIN webhook_delivery d ON d.id = a.delivery_id
        WHERE d.subscription_id = ANY(:sids)""",
        sids=sids,
    )
    if (check.attempts, check.deliveries) != (n, n):
        raise RuntimeError(f"expected {n} attempts, one per delivery; got {check}")
    await _exec(
        sessions,
        "DELETE FROM webhook_attempt WHERE delivery_id IN (SELECT id FROM "
        "webhook_delivery WHERE subscription_id = ANY(:sids)) RETURNING 1",
        sids=sids,
    )
    await _exec(
        sessions,
        "DELETE FROM webhook_delivery WHERE subscription_id = ANY(:sids) RETURNING 1",
        sids=sids,
    )
    await _exec(
        sessions, "DELETE FROM webhook_subscription WHERE id = ANY(:sids) RETURNING 1", sids=sids
    )
    return elapsed


async def _raw(url: str, payloads: list[dict[str, Any]], concurrency: int, clients: int) -> float:
    """C workers POSTing the bodies; worker i uses client i mod `clients`."""
    bodies = [json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode() for p in payloads]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    per = -(-concurrency // clients)
    limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
    pool = [
        httpx.AsyncClient(limits=limits, timeout=10, follow_redirects=False, trust_env=False)
        for _ in range(clients)
    ]
    errors = 0

    async def worker(i: int) -> None:
        nonlocal errors
        client = pool[i % clients]
        while not queue.empty():
            body = queue.get_nowait()
            r = await client.post(
                f"{url}/{i % clients}", content=body, headers={"content-type": "application/json"}
            )
            if r.status_code != 200:
                errors += 1

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        for c in pool:
            await c.aclose()
    if errors:
        raise RuntimeError(f"raw loop: {errors} errors")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--partners",
        type=int,
        default=16,
        help="subscriptions the deliveries are spread over (the sender's "
        "per-partner cap is concurrency / partners)",
    )
    args = parser.parse_args()

    from devtools import stack
    from shared.db import make_engine, make_sessionmaker
    from shared.settings import get_settings

    s = get_settings()
    alive = s.run_dir / "notifications-dispatcher.alive"
    if alive.exists() and time.time() - float(alive.read_text() or 0) < 10:
        sys.exit(
            f"instance {s.instance}'s dispatcher is running and would take the bench's "
            "deliveries; stop it or use another instance (WAYMARK_INSTANCE, _DB_NAME)"
        )
    await stack.up(s, infra_only=True)
    engine = make_engine(s, "notifications")
    sessions = make_sessionmaker(engine)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.notifications:receiver_app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "off",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    c, p, n = args.concurrency, args.partners, args.deliveries
    rates: dict[str, list[float]] = {"raw1": [], "raw": [], "wm": []}
    try:
        await _wait_http(f"{url}/0")
        payload_bytes = len(json.dumps(_payloads(1)[0], separators=(",", ":")).encode())
        # warm both paths up (connections, caches, PostgreSQL buffers)
        await _raw(url, _payloads(200), c, p)
        await _waymark(s, sessions, url, _payloads(200), c, p)
        for _ in range(args.repeat):
            rates["raw1"].append(n / await _raw(url, _payloads(n), c, 1))
            rates["raw"].append(n / await _raw(url, _payloads(n), c, p))
            rates["wm"].append(n / await _waymark(s, sessions, url, _payloads(n), c, p))
    finally:
        receiver.terminate()
        receiver.wait()
        await engine.dispose()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; instance {s.instance}"
    )
    print(
        f"{n} deliveries x {args.repeat} run(s) over {p} partners, concurrency {c} "
        f"({-(-c // p)} per partner), payload {payload_bytes} bytes; median of runs"
    )
    for key, label in (
        ("raw1", "raw httpx loop, one shared client"),
        ("raw", f"raw httpx loop, {p} clients"),
        ("wm", "Waymark WebhookSender"),
    ):
        print(f"{label:36} {med[key]:8.0f} /s   runs: {', '.join(f'{r:.0f}' for r in rates[key])}")
    print(
        f"ratio (Waymark / raw with {p} clients): {med['wm'] / med['raw']:.3f}; "
        f"(Waymark / raw with one client): {med['wm'] / med['raw1']:.3f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
