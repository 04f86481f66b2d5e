"""`waymark import` and `waymark integration ...`: the bulk importer and the integration service's
operations from the local CLI.

- `waymark import KIND FILE --source ID ...` runs the importer an ICS operator runs
  (`python -m services.integration.importer`), with the same arguments.
- `waymark integration status` prints, per registered source, messages received, accepted and
  refused, open dead letters and when last seen. It reads the integration API's `GET /status`
  with a locally minted admin token of the deployment's ICS (what an operator's own admin token
  does against a deployed service), so it needs the integration API running.
- `waymark integration imports` lists the importer's runs (file, kind, records done, outcome
  counts), read from the integration schema directly (no API serves them).
- `waymark integration register ID --name N --org ODS` registers a bulk source (PUT /sources).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any

import httpx

from shared.settings import Settings


def admin_headers(s: Settings) -> dict[str, str]:
    from shared.auth import mint_token

    token = mint_token(
        s, sub="waymark-cli", roles=["admin"], org=s.ics, ics=s.ics, name="Waymark CLI"
    )
    return {"Authorization": f"Bearer {token}"}


def _when(value: Any) -> str:
    if not value:
        return "never"
    return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def print_status(body: dict[str, Any]) -> None:
    head = (
        f"{'source':<24} {'channel':<7} {'org':<10} {'on':<3} {'received':>9} {'accepted':>9} "
        f"{'refused':>8} {'dead':>5}  last seen"
    )
    print(head)
    for r in body["sources"]:
        print(
            f"{r['id']:<24} {r['channel']:<7} {r['org_code']:<10} "
            f"{'yes' if r['active'] else 'no':<3} {r['received']:>9} {r['accepted']:>9} "
            f"{r['refused']:>8} {r['dead_letters']:>5}  {_when(r['last_seen'])}"
        )
    print(
        f"{len(body['sources'])} source(s); open dead letters from unknown senders: "
        f"{body['unknown_sender_dead_letters']}"
    )


def cmd_integration(args: argparse.Namespace, s: Settings) -> int:
    if args.action == "imports":
        return _imports(s)
    url = s.api_url("integration")
    try:
        with httpx.Client(base_url=url, timeout=30, headers=admin_headers(s)) as http:
            if args.action == "register":
                if not (args.id and args.name and args.org):
                    print("register needs ID, --name and --org", file=sys.stderr)
                    return 2
                body = {"id": args.id, "name": args.name, "org_code": args.org, "channel": "bulk"}
                resp = http.put(f"/sources/{args.id}", json=body)
            else:
                resp = http.get("/status")
    except httpx.HTTPError as exc:
        print(f"the integration API at {url} did not answer ({exc}); `waymark up`", file=sys.stderr)
        return 1
    if resp.status_code >= 400:
        print(f"{resp.status_code}: {resp.text}", file=sys.stderr)
        return 1
    if args.action == "register":
        print(f"registered bulk source {args.id} ({args.org})")
    else:
        print_status(resp.json())
    return 0


def _imports(s: Settings) -> int:
    from services.integration.importer import store
    from shared.db import make_engine, make_sessionmaker

    async def go() -> list[store.Run]:
        engine = make_engine(s, "integration", pool_size=1)
        try:
            return await store.runs(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    runs = asyncio.run(go())
    for r in runs:
        print(
            f"{r.source_system:<20} {r.kind:<5} {r.file_name:<28} {r.file_sha256[:12]}  "
            f"{r.status:<9} {r.records_done}/{r.records_total} records: {r.accepted} accepted, "
            f"{r.unchanged} unchanged, {r.refused} refused ({r.runs} run(s))"
        )
    print(f"{len(runs)} import(s)")
    return 0


def add_parsers(sub: Any) -> None:
    imp = sub.add_parser(
        "import",
        help="import an extract file (ecds, gpad, ers): the bulk importer, same arguments as "
        "`python -m services.integration.importer`",
        add_help=False,
    )
    # devtools.cli.main hands `waymark import ...` to the importer before parsing
    imp.add_argument("importer_args", nargs=argparse.REMAINDER)

    it = sub.add_parser(
        "integration",
        help="the integration service: status per source, import runs, register a bulk source",
    )
    it.add_argument("action", choices=["status", "imports", "register"])
    it.add_argument("id", nargs="?", help="register: the source's id, e.g. ers-worklist")
    it.add_argument("--name", help="register: its name")
    it.add_argument("--org", help="register: its organisation's ODS code")
    it.set_defaults(fn=cmd_integration)
