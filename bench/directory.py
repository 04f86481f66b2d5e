"""Directory search over 10,000 services: Waymark's search endpoint against a hand-written SQL
query doing the same search, on the same database, in the same run.

  waymark: GET /services through the directory app in-process (ASGI: routing, auth, validation,
           the repository's generated SQL, response models), one transaction per request
  raw:     a hand-written SQL statement for the same search on an asyncpg pool, no app

Two searches are measured: "text near a postcode" (q="back pain low mood", 15 km, ranked by
relevance) and "filters near a postcode" (two categories + a condition + self-referral,
20 km, nearest first). For each: p50/p99 latency of sequential requests and requests per
second with 8 concurrent clients. Both sides must return the same services in the same order;
the run stops if they differ.

Run on demand: `python bench/directory.py [--services N] [--requests R]`. It starts (or
reuses) the local infrastructure and works as the `bench` instance (database waymark_bench),
so it never touches dev or test data. The bench services are loaded once (bulk SQL, the same
derived columns the service computes) and reused by later runs. Record results in
bench/RESULTS.md.
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
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from devtools import stack  # noqa: E402
from services.directory import domain  # noqa: E402
from services.directory.oruk import taxonomies  # noqa: E402
from shared.auth import mint_token  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402

BENCH_ORG_PREFIX = "BENCH-"
CENTRE = (53.70, -1.95)
WORDS = [
    "pain",
    "back",
    "neck",
    "mood",
    "anxiety",
    "stress",
    "sleep",
    "movement",
    "group",
    "walking",
    "confidence",
    "work",
    "carers",
    "community",
    "breathing",
    "exercise",
]

# --- the searches: API parameters and the hand-written SQL doing the same ------------------

TEXT_NEAR = dict(q="back pain low mood", postcode="WY1 0BG", radius_km=15, page_size=20)
TEXT_NEAR_SQL = """
WITH q AS MATERIALIZED (
    SELECT tsquery_any(t) AS tsq, array_agg(t) AS terms
    FROM (SELECT plainto_tsquery('simple', w) AS t
          FROM unnest(tsvector_to_array(to_tsvector('english', $1::text))) AS w) x),
o AS MATERIALIZED (
    SELECT ll_to_earth(latitude, longitude) AS pt FROM postcode WHERE postcode = $2),
near AS (
    SELECT sal.service_id, min(sec_to_gc(cube_distance(o.pt, l.geo))) AS d
    FROM o JOIN location l ON earth_box(o.pt, $3) @> l.geo
    JOIN service_at_location sal ON sal.location_id = l.id
    WHERE sec_to_gc(cube_distance(o.pt, l.geo)) <= $3
    GROUP BY sal.service_id)
SELECT s.id,
       (SELECT count(*) FROM unnest(q.terms) t WHERE s.search_vector @@ t)
         + ts_rank_cd('{0.1, 0.3, 0.6, 1.0}', s.search_vector, q.tsq, 32) AS score,
       near.d, count(*) OVER () AS total
FROM service s CROSS JOIN q JOIN near ON near.service_id = s.id
WHERE s.lifecycle = 'published' AND s.status IN ('active', 'temporarily closed')
  AND s.search_vector @@ q.tsq
ORDER BY score DESC, near.d, lower(s.name), s.id
LIMIT 20"""

FILTER_NEAR = dict(
    category=["peer_support", "exercise_yoga"],
    condition="mental_health",
    self_referral="true",
    postcode="WY1 0BG",
    radius_km=20,
    page_size=20,
)
FILTER_NEAR_SQL = """
WITH o AS MATERIALIZED (
    SELECT ll_to_earth(latitude, longitude) AS pt FROM postcode WHERE postcode = $1),
near AS (
    SELECT sal.service_id, min(sec_to_gc(cube_distance(o.pt, l.geo))) AS d
    FROM o JOIN location l ON earth_box(o.pt, $2) @> l.geo
    JOIN service_at_location sal ON sal.location_id = l.id
    WHERE sec_to_gc(cube_distance(o.pt, l.geo)) <= $2
    GROUP BY sal.service_id)
SELECT s.id, near.d, count(*) OVER () AS total
FROM service s JOIN near ON near.service_id = s.id
WHERE s.lifecycle = 'published' AND s.status IN ('active', 'temporarily closed')
  AND s.category IN ('peer_support', 'exercise_yoga') AND s.self_referral
  AND 'mental_health' = ANY(s.conditions)
ORDER BY near.d, lower(s.name), s.id
LIMIT 20"""


async def raw_text_near(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as c:
        return [r["id"] for r in await c.fetch(TEXT_NEAR_SQL, TEXT_NEAR["q"], "WY1 0BG", 15000.0)]


async def raw_filter_near(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as c:
        return [r["id"] for r in await c.fetch(FILTER_NEAR_SQL, "WY1 0BG", 20000.0)]


# --- loading 10,000 services ------------------------------------------------------------------


def synthetic_rows(n: int) -> list[tuple[Any, ...]]:
    rng = random.Random(10_000)
    cats = list(domain.Category)
    rows = []
    for i in range(n):
        cat = rng.choice(cats)
        conditions = rng.choice(
            [["persistent_pain"], ["mental_health"], ["persistent_pain", "mental_health"]]
        )
        modes = sorted(
            rng.sample([m.value for m in domain.DeliveryMode], rng.randint(1, 3)),
            key=[m.value for m in domain.DeliveryMode].index,
        )
        day = rng.randrange(7)
        start = rng.choice([9, 10, 13, 17, 18])
        opening = domain.multirange_literal(
            [(day * 1440 + start * 60, day * 1440 + (start + 3) * 60)]
        )
        # spread over ~60 km around the centre, denser in the middle
        r_km, bearing = 60 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lat = CENTRE[0] + r_km * math.cos(bearing) / 111.32
        lon = CENTRE[1] + r_km * math.sin(bearing) / (111.32 * math.cos(math.radians(53.7)))
        name = f"{rng.choice(WORDS).title()} {cat.value.replace('_', ' ')} {i}"
        description = " ".join(rng.choice(WORDS) for _ in range(25))
        rows.append(
            (
                f"bench-svc-{i:05d}",
                f"{BENCH_ORG_PREFIX}{i % 200:03d}",
                name,
                description,
                cat.value,
                conditions,
                modes,
                rng.random() < 0.4,
                rng.choice([None, 2, 6, 12]),
                bool({"phone", "video"} & set(modes)),
                rng.random() < 0.8,
                opening,
                round(lat, 6),
                round(lon, 6),
            )
        )
    return rows


async def load(s: Settings, n: int) -> None:
    conn = await asyncpg.connect(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_credentials("owner")[1],
        database=s.db_name,
        server_settings={"search_path": "directory"},
    )
    try:
        have = await conn.fetchval("SELECT count(*) FROM service WHERE id LIKE 'bench-svc-%'")
        if have == n:
            return
        print(f"loading {n} services ...")
        async with conn.transaction():
            await conn.execute("DELETE FROM attribute WHERE service_id LIKE 'bench-svc-%'")
            await conn.execute(
                "DELETE FROM service_at_location WHERE service_id LIKE 'bench-svc-%'"
            )
            await conn.execute("DELETE FROM service WHERE id LIKE 'bench-svc-%'")
            await conn.execute("DELETE FROM location WHERE id LIKE 'bench-loc-%'")
            await conn.execute(
                f"DELETE FROM organization WHERE org_code LIKE '{BENCH_ORG_PREFIX}%'"
            )
            await conn.executemany(
                "INSERT INTO organization (id, org_code, ics, name, version) "
                "VALUES ($1, $2, 'ICS-BENCH', $3, 1)",
                [
                    (
                        domain.organization_id_for(f"{BENCH_ORG_PREFIX}{k:03d}"),
                        f"{BENCH_ORG_PREFIX}{k:03d}",
                        f"Bench provider {k}",
                    )
                    for k in range(200)
                ],
            )
            await conn.execute("""CREATE TEMP TABLE stage (
                id TEXT, org TEXT, name TEXT, description TEXT, category TEXT,
                conditions TEXT[], modes TEXT[], self_referral BOOLEAN, waiting INTEGER,
                remote BOOLEAN, free BOOLEAN, opening TEXT, lat FLOAT8, lon FLOAT8)
                ON COMMIT DROP""")
            await conn.copy_records_to_table("stage", records=synthetic_rows(n))
            await conn.execute("""
                INSERT INTO service (id, organization_id, org_code, name, description, status,
                    application_process, category, conditions, delivery_modes,
                    communication_support, self_referral, waiting_weeks, remote,
                    free_of_charge, opening, lifecycle, version, created_by, published_at)
                SELECT st.id, o.id, st.org, st.name, st.description, 'active',
                    'Refer through Waymark.', st.category, st.conditions, st.modes, '{}',
                    st.self_referral, st.waiting, st.remote, st.free,
                    CAST(st.opening AS INT4MULTIRANGE), 'published', 1, 'bench', now()
                FROM stage st JOIN organization o ON o.org_code = st.org""")
            await conn.execute("""
                INSERT INTO location (id, organization_id, location_type, name, latitude,
                                      longitude)
                SELECT replace(st.id, 'bench-svc', 'bench-loc'), o.id, 'physical',
                       st.name || ' venue', st.lat, st.lon
                FROM stage st JOIN organization o ON o.org_code = st.org""")
            await conn.execute("""
                INSERT INTO service_at_location (id, service_id, location_id, position)
                SELECT 'sal-' || id, id, replace(id, 'bench-svc', 'bench-loc'), 0
                FROM stage""")
            # the Waymark attributes the service would derive (category, conditions, modes)
            terms = {
                (tax.key, t.code): tax.term_id(t.code)
                for tax in taxonomies.WAYMARK_TAXONOMIES
                for t in tax.terms
            }
            attrs = []
            for row in synthetic_rows(n):
                sid, cat, conditions, modes = row[0], row[4], row[5], row[6]
                codes = (
                    [("service-category", cat)]
                    + [("condition", c) for c in conditions]
                    + [("delivery-mode", m) for m in modes]
                )
                for pos, key in enumerate(codes):
                    term = terms[key]
                    attrs.append((taxonomies.attribute_id(sid, term), sid, term, "service", pos))
            await conn.copy_records_to_table(
                "attribute",
                records=attrs,
                columns=["id", "service_id", "taxonomy_term_id", "link_type", "position"],
            )
            await conn.execute("""
                UPDATE service s SET taxonomy_text = t.text
                FROM (SELECT a.service_id,
                             string_agg(tt.name || ' ' || coalesce(tt.description, ''), ' '
                                        ORDER BY a.position) AS text
                      FROM attribute a JOIN taxonomy_term tt ON tt.id = a.taxonomy_term_id
                      WHERE a.service_id LIKE 'bench-svc-%' GROUP BY a.service_id) t
                WHERE s.id = t.service_id""")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- measuring --------------------------------------------------------------------------------


async def latencies(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


async def throughput(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> float:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    s = get_settings()
    await stack.up(s, infra_only=True)
    await load(s, args.services)

    from services.directory.api import build_app

    app = build_app(s)
    token = mint_token(s, sub="bench", roles=["clinician"], org="GP-BENCH")
    pool = await asyncpg.create_pool(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_credentials("owner")[1],
        database=s.db_name,
        min_size=s.db_pool_size,
        max_size=s.db_pool_size,
        server_settings={"search_path": "directory"},
    )
    results = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://directory",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            for label, params, raw in [
                ("text near a postcode", TEXT_NEAR, raw_text_near),
                ("filters near a postcode", FILTER_NEAR, raw_filter_near),
            ]:

                async def api(params: dict[str, Any] = params) -> list[str]:
                    r = await http.get("/services", params=params)
                    r.raise_for_status()
                    return [h["id"] for h in r.json()["results"]]

                async def sql(raw: Any = raw) -> list[str]:
                    return await raw(pool)  # type: ignore[no-any-return]

                got_api, got_sql = await api(), await sql()
                if got_api != got_sql:
                    raise SystemExit(
                        f"{label}: the API and the SQL disagree:\n{got_api}\n{got_sql}"
                    )
                total = (await http.get("/services", params=params)).json()["total_items"]
                for call in (api, sql):  # warm up both
                    await latencies(call, 20)
                lat_api = await latencies(api, args.requests)
                lat_sql = await latencies(sql, args.requests)
                rps_api = await throughput(api, args.requests, args.concurrency)
                rps_sql = await throughput(sql, args.requests, args.concurrency)
                results.append((label, total, len(got_api), lat_api, lat_sql, rps_api, rps_sql))
    await pool.close()

    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(
        f"services: {args.services}; sequential requests per side: {args.requests}; "
        f"throughput with {args.concurrency} concurrent clients"
    )
    for label, total, shown, lat_api, lat_sql, rps_api, rps_sql in results:
        print(f"\n{label}: {total} matches, first page of {shown}")
        print(
            f"  waymark API  p50 {pct(lat_api, 50):6.2f} ms  p99 {pct(lat_api, 99):6.2f} ms"
            f"  {rps_api:7.0f} req/s"
        )
        print(
            f"  raw SQL      p50 {pct(lat_sql, 50):6.2f} ms  p99 {pct(lat_sql, 99):6.2f} ms"
            f"  {rps_sql:7.0f} req/s"
        )
        print(
            f"  API/SQL      p50 x{statistics.median(lat_api) / statistics.median(lat_sql):.2f}"
            f"  throughput {rps_api / rps_sql:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
