"""Create-referral requests per second and latency (p50, p99) through the real referrals API,
beside a bare FastAPI + asyncpg endpoint doing a single insert, in the same run.

Both servers run as one uvicorn process each on loopback against the same PostgreSQL; the
same load generator (httpx, fixed concurrency) drives both. The referrals API does what a
real request does: verify the JWT, validate (NHS number, SNOMED codes, directory service),
pseudonymise, write referral + history + audit + outbox in one transaction.

Run on demand: `python bench/referrals.py [--requests N] [--concurrency C]`. Works as the
`bench` instance (database waymark_bench), never touching dev or test data.
"""

from __future__ import annotations

import os

for _k, _v in {
    "WAYMARK_INSTANCE": "bench",
    "WAYMARK_DB_NAME": "waymark_bench",
    "WAYMARK_TOPIC_PREFIX": "bench.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-bench",
    "WAYMARK_API_PORT_BASE": "18700",
    # one bench user sends thousands of writes: the per-user write limit (tested in
    # tests/security) would answer most of them 429
    "WAYMARK_RATE_LIMIT_PER_MINUTE": "10000000",
    "WAYMARK_RATE_LIMIT_BURST": "1000000",
}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

from devtools import stack  # noqa: E402
from devtools.stack.processes import UVICORN_SPEED_FLAGS  # noqa: E402
from shared.auth import mint_token  # noqa: E402
from shared.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from shared.settings import Settings, get_settings, settings_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _bare_port(s: Settings) -> int:
    # inside the instance's own port range, so two instances' benches never share it
    return s.api_port_base + 90


def _nhs_numbers(n: int) -> list[str]:
    from devtools.demo import demo_nhs_numbers

    return demo_nhs_numbers(n)


async def _prepare(s: Settings) -> None:
    from services.referrals.handlers import apply_directory_event
    from shared.events.directory import ServicePublished
    from shared.events.envelope import make_event

    await stack.up(s, infra_only=True)
    engine = make_engine(s, "referrals")
    async with unit_of_work(make_sessionmaker(engine)) as session:
        data = ServicePublished(
            service_id="svc-bench",
            organization_id="org-bench",
            org_code="PAIN-BENCH",
            category="pain_management_programme",
            status="active",
        )
        await apply_directory_event(
            session=session, event=make_event(data, subject="svc-bench"), data=data, settings=s
        )
    await engine.dispose()


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                await c.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


#: failed requests' status and body, for the report
failures: list[str] = []


async def _load(
    url: str,
    bodies: list[dict],
    headers: dict[str, str],  # type: ignore[type-arg]
    concurrency: int,
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[dict] = asyncio.Queue()  # type: ignore[type-arg]
    for b in bodies:
        queue.put_nowait(b)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=body, headers=headers)
                except httpx.HTTPError as exc:  # a failed request, counted like any other
                    errors += 1
                    failures.append(f"{url}: {type(exc).__name__} {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    errors += 1
                    failures.append(f"{r.status_code} {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies, errors


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per side")
    args = parser.parse_args()
    s = get_settings()
    await _prepare(s)
    env = settings_env(s)
    user, password = s.pg_credentials("owner")
    env["BENCH_DSN"] = f"postgresql://{user}:{password}@{s.pg_host}:{s.pg_port}/{s.db_name}"
    port = s.api_port("referrals")
    bare_port = _bare_port(s)
    api = _start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "services.referrals.api:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            # both servers on the loop and parser every API runs with (the stack's flags)
            *UVICORN_SPEED_FLAGS,
        ],
        env,
    )
    bare = _start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(bare_port),
            "--no-access-log",
            "--log-level",
            "warning",
            # both servers on the loop and parser every API runs with (the stack's flags)
            *UVICORN_SPEED_FLAGS,
        ],
        env,
    )
    try:
        await _wait_http(f"http://127.0.0.1:{port}/health")
        await _wait_http(f"http://127.0.0.1:{bare_port}/docs")
        token = mint_token(s, sub="bench", roles=["clinician"], org="GP-BENCH")
        numbers = _nhs_numbers(args.requests)
        bodies = [
            {
                "patient": {
                    "nhs_number": n,
                    "given_name": "Bench",
                    "family_name": f"Synthetic-{i}",
                    "birth_date": "1970-01-01",
                },
                "source": "gp",
                "from_practitioner": "Dr Bench",
                "to_service_id": "svc-bench",
                "reason_codes": ["279039007", "35489007"],
                "clinical_summary": "Persistent low back pain and low mood.",
                "consent_to_referral": True,
            }
            for i, n in enumerate(numbers)
        ]
        bare_bodies = [
            {
                "nhs_number": b["patient"]["nhs_number"],
                "given_name": "Bench",
                "family_name": b["patient"]["family_name"],
                "to_service_id": "svc-bench",
                "reason_codes": b["reason_codes"],
                "clinical_summary": b["clinical_summary"],
            }
            for b in bodies
        ]
        # warm both up
        await _load(f"http://127.0.0.1:{bare_port}/items", bare_bodies[:100], {}, 4)
        await _load(
            f"http://127.0.0.1:{port}/referrals",
            bodies[:100],
            {"Authorization": f"Bearer {token}"},
            4,
        )
        # side by side in rounds, alternating which goes first, so a change in the machine's
        # load (other processes, a checkpoint) falls on both rather than on one of them
        bare_lat: list[float] = []
        api_lat: list[float] = []
        bare_t = api_t = 0.0
        bare_err = api_err = 0
        size = -(-len(bodies) // args.rounds)
        for r in range(args.rounds):
            chunk = slice(r * size, (r + 1) * size)
            for side in ("bare", "api") if r % 2 == 0 else ("api", "bare"):
                if side == "bare":
                    t, lat, err = await _load(
                        f"http://127.0.0.1:{bare_port}/items",
                        bare_bodies[chunk],
                        {},
                        args.concurrency,
                    )
                    bare_t, bare_err = bare_t + t, bare_err + err
                    bare_lat += lat
                else:
                    t, lat, err = await _load(
                        f"http://127.0.0.1:{port}/referrals",
                        bodies[chunk],
                        {"Authorization": f"Bearer {token}"},
                        args.concurrency,
                    )
                    api_t, api_err = api_t + t, api_err + err
                    api_lat += lat
    finally:
        api.terminate()
        bare.terminate()
        api.wait()
        bare.wait()
    n = args.requests
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores; {n} requests, "
        f"concurrency {args.concurrency}, {args.rounds} alternating rounds; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    print(
        f"{'bare FastAPI + asyncpg insert':34} {n / bare_t:8.0f} {_pct(bare_lat, 50):8.1f} "
        f"{_pct(bare_lat, 99):8.1f} {bare_err:7d}"
    )
    print(
        f"{'Waymark POST /referrals':34} {n / api_t:8.0f} {_pct(api_lat, 50):8.1f} "
        f"{_pct(api_lat, 99):8.1f} {api_err:7d}"
    )
    if bare_err or api_err:
        print(
            f"no ratio: {bare_err + api_err} requests failed (first: {failures[0]})",
            file=sys.stderr,
        )
        sys.exit(1)
    print(
        f"ratio (Waymark / bare) throughput: {(n / api_t) / (n / bare_t):.3f}; "
        f"p99: {_pct(api_lat, 99) / _pct(bare_lat, 99):.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
