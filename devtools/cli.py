"""`waymark`: the one command a newcomer and every test use to run Waymark locally."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devtools import identity_cli
from shared.settings import SERVICE_SCHEMAS, Settings, get_settings

if TYPE_CHECKING:
    from shared.dlq import DeadLetter


def _print_status(rows: list[dict[str, object]]) -> None:
    print(f"{'part':<20} {'pid':>8} {'port':>6}  {'health':<9} urls")
    for r in rows:
        health = "healthy" if r["healthy"] else "DOWN"
        urls = " ".join(r["urls"])  # type: ignore[arg-type]
        print(f"{r['part']:<20} {r['pid']!s:>8} {r['port']!s:>6}  {health:<9} {urls}")


def cmd_up(args: argparse.Namespace, s: Settings) -> int:
    from devtools import stack

    t0 = time.monotonic()
    try:
        asyncio.run(stack.up(s, infra_only=args.infra_only, wait=args.wait))
    except stack.StackError as exc:
        print(f"waymark up failed: {exc}", file=sys.stderr)
        return 1
    rows = asyncio.run(stack.status(s))
    _print_status(
        [r for r in rows if not args.infra_only or r["part"] in ("postgres", "kafka", "temporal")]
    )
    print(f"\nup in {time.monotonic() - t0:.1f}s; state in {s.home}")
    return 0


def cmd_down(args: argparse.Namespace, s: Settings) -> int:
    from devtools import stack

    try:
        stopped = stack.down(s, infra=not args.apps_only, wait=args.wait)
    except stack.StackError as exc:
        print(f"waymark down failed: {exc}", file=sys.stderr)
        return 1
    print("stopped: " + ", ".join(stopped))
    return 0


def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    from devtools import stack

    rows = asyncio.run(stack.status(s))
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        _print_status(rows)
    return 0 if all(r["healthy"] for r in rows) else 3


def cmd_logs(args: argparse.Namespace, s: Settings) -> int:
    from devtools import stack

    try:
        part = stack.part_by_name(args.part)
    except stack.StackError as exc:
        print(exc, file=sys.stderr)
        return 2
    path = part.log(s)
    if not path.exists():
        print(f"no log yet at {path}", file=sys.stderr)
        return 1
    argv = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(path)]
    return subprocess.call(argv)


def ensure_key_files(s: Settings) -> None:
    """Every key file the processes read (token signing pair, pseudonym key, SMS API key,
    Temporal payload keyring): created where the settings say when missing, never overwritten.
    Keys live beside the data they protect, so `waymark migrate` (the Compose and Kubernetes
    migrate job) makes them."""
    from devtools.stack import ensure_sms_api_key
    from shared.auth import ensure_keys
    from shared.pseudonym import ensure_pseudonym_key
    from shared.temporal_codec import ensure_keyring

    if s.deployment_mode == "local":
        from devtools.stack import idp

        ensure_keys(s)  # the local provider's signing keys, clients and configuration
        idp.write_config(s)
    ensure_pseudonym_key(s)
    ensure_sms_api_key(s)
    ensure_keyring(s.temporal_codec_keys_file())


def cmd_migrate(args: argparse.Namespace, s: Settings) -> int:
    from devtools.stack import ensure_database
    from shared.migrations import migrate_all

    async def go() -> list[str]:
        await ensure_database(s)
        return await migrate_all(s)

    ensure_key_files(s)
    print("migrated: " + ", ".join(asyncio.run(go())))
    return 0


def cmd_pg_secrets(args: argparse.Namespace, s: Settings) -> int:
    """One random password file per database role (kept if present): the local stack's under
    <home>/keys/pg, or with --compose the files docker-compose.yml's secrets name."""
    from devtools.stack import write_role_secrets

    folder = (
        Path(args.dir)
        if args.dir
        else (
            Path(os.environ.get("WAYMARK_COMPOSE_SECRETS", ".waymark/compose-secrets"))
            if args.compose
            else s.pg_credentials_path()
        )
    )
    made = write_role_secrets(s, folder, compose=args.compose)
    print(f"{folder}: " + (", ".join(made) or "every role has a password already"))
    return 0


def cmd_topics(args: argparse.Namespace, s: Settings) -> int:
    from shared.topics import ensure_topics

    created = asyncio.run(ensure_topics(s, replication=args.replication))
    print("created: " + (", ".join(created) or "none (all exist)"))
    return 0


def cmd_schemas(args: argparse.Namespace, s: Settings) -> int:
    from shared.events.registry import load_all

    registry = load_all()
    if args.action == "export":
        for p in registry.export_schemas():
            print(p)
        return 0
    stale = registry.stale_schemas()
    if stale:
        print(
            "event schemas out of date (run `waymark schemas export`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    print("event schemas match the models")
    return 0


def cmd_seed(args: argparse.Namespace, s: Settings) -> int:
    import httpx
    from aiokafka.errors import KafkaError

    from devtools.demo import (
        POPULATION_MONTHS,
        seed,
        seed_care_plans,
        seed_population,
        seed_preferences,
    )
    from services.directory.demo import seed_directory
    from services.integration.importer.referrals import ReferralsUnavailable
    from services.integration.importer.runner import ImportRefused

    try:
        services = seed_directory(s)
        users = seed_preferences(s)
        ids = seed(s)
        plans = seed_care_plans(s)
        population = seed_population(s, people=args.people, seed=args.population_seed)
    except (httpx.HTTPError, KafkaError, ReferralsUnavailable, ImportRefused) as exc:
        print(f"seeding failed ({exc}); is the stack up? `waymark up`", file=sys.stderr)
        return 1
    print(
        f"demo data: {len(services)} directory services, {len(ids)} referrals and "
        f"{len(plans)} care plans for synthetic patients, notification preferences of "
        f"{len(users)} demo referrers (idempotent)"
    )
    if population.people:
        print(
            f"synthetic population: {population.people} people over {POPULATION_MONTHS} "
            f"months: {population.referrals} referrals ({population.steps} dated steps) from an "
            f"e-RS worklist extract and {population.gp_appointments} GP appointments, loaded "
            "by the bulk importer (fixed seed: seeding again adds nothing)\n"
            "  every one of these referrals is held by the referrals service with its real "
            "past dates, so each alert opens onto its records\n"
            f"  their journeys raise {population.loops} loop and {population.stalls} stall "
            "alerts in the dashboard: loops within seconds, stalls once each journey's "
            "events have settled (60 s)\n"
            f"  extracts and their per-record reports: {population.files[0].parent}"
        )
    print(
        f"dashboard: http://127.0.0.1:{s.api_port('notifications')}/dashboard/login "
        f"(through the local identity provider, {s.issuer}: pick a demo user, no password; a "
        f"coordinator of {s.ics} for the alerts, the lead for the overview)"
    )
    print(f"mail and texts sent locally: {s.home / 'sinks' / s.instance}/(mail|sms)/")
    print(
        f"journeys: http://127.0.0.1:{s.temporal_ui_port}/namespaces/"
        f"{s.temporal_namespace}/workflows"
    )
    print(
        f"referrals API: http://127.0.0.1:{s.api_port('referrals')}/docs "
        "(token: waymark token --role clinician --org GP-A81001)"
    )
    print(f"directory API: http://127.0.0.1:{s.api_port('directory')}/docs (ORUK feed under /oruk)")
    return 0


def cmd_outbox(args: argparse.Namespace, s: Settings) -> int:
    from shared import outbox

    if args.action == "parked":
        rows = asyncio.run(outbox.parked(s, args.schema))
        for r in rows:
            print(
                f"{r.event_id}  {r.topic}  {r.event_type}  attempts={r.attempts}  "
                f"parked={r.parked_at:%Y-%m-%d %H:%M:%S}  {r.last_error}"
            )
        print(f"{len(rows)} parked in {args.schema}")
        return 0
    n = asyncio.run(outbox.redrive(s, args.schema, args.event_id or None))
    print(f"{n} parked row(s) back in line for the {args.schema} relay")
    return 0


def _print_dead_letter(d: DeadLetter, note: str = "") -> None:
    topic, partition, offset = d.original
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.timestamp_ms / 1000))
    status = f"redriven -> {d.redriven_to}" if d.redriven_to else "pending"
    again = f" (after {d.redrive_count} re-drive(s))" if d.redrive_count else ""
    print(
        f"{d.ref:>8}  {when}  {d.consumer}  attempts={d.attempts}  "
        f"from={topic}[{partition}]@{offset}  event={d.event_id or '-'}  "
        f"{len(d.value or b'')}B  {status}{again}{note}\n          {d.reason}"
    )


def cmd_dlq(args: argparse.Namespace, s: Settings) -> int:
    from shared import dlq

    topic, dlq_topic = dlq.topics_for(s, args.topic)
    try:
        if args.action == "list":
            letters = asyncio.run(dlq.list_dead_letters(s, args.topic, consumer=args.consumer))
            for d in letters:
                _print_dead_letter(d)
            pending = sum(1 for d in letters if d.redriven_to is None)
            print(
                f"{len(letters)} dead letter(s) on {dlq_topic}"
                f"{' of ' + args.consumer if args.consumer else ''}: {pending} pending, "
                f"{len(letters) - pending} redriven"
            )
            return 0
        report = asyncio.run(
            dlq.redrive(
                s,
                args.topic,
                consumer=args.consumer,
                offsets=args.offset or None,
                dry_run=args.dry_run,
                force=args.force,
            )
        )
    except (LookupError, ValueError) as exc:
        print(f"waymark dlq: {exc}", file=sys.stderr)
        return 2
    for d, to in report.redriven:
        _print_dead_letter(d, f"  ->  {to}")
    for d in report.already:
        print(f"{d.ref:>8}  already redriven -> {d.redriven_to}; not published again")
    for d, why in report.refused:
        print(f"{d.ref:>8}  refused (still not an event; --force sends it anyway): {why}")
    for ref in report.not_found:
        print(f"{ref:>8}  no dead letter there")
    verb = "would republish" if report.dry_run else "republished"
    print(
        f"{verb} {report.published} message(s) to {topic} for {len(report.redriven)} dead "
        f"letter(s); {len(report.already)} already redriven, {len(report.refused)} refused"
    )
    return 2 if report.not_found else 0


def cmd_run(args: argparse.Namespace, s: Settings) -> int:
    """Run one part in the foreground (what a container runs)."""
    from devtools import stack

    part = stack.part_by_name(args.part)
    if part.kind != "app":
        print(f"{args.part} is infrastructure; `waymark up` starts it", file=sys.stderr)
        return 2
    argv = part.command(s)
    os.execvpe(argv[0], argv, os.environ.copy())


def _non_negative(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return n


WAIT_HELP = (
    "seconds to wait for another `up` or `down` of this instance to finish before giving up "
    "(default %(default).0f)"
)


def build_parser() -> argparse.ArgumentParser:
    from devtools.demo import POPULATION_PEOPLE, POPULATION_SEED
    from devtools.stack.lock import WAIT_SECONDS

    p = argparse.ArgumentParser(prog="waymark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start PostgreSQL, Kafka, Temporal and every Waymark part")
    up.add_argument(
        "--infra-only",
        action="store_true",
        help="only PostgreSQL, Kafka and Temporal (plus schemas, topics, keys)",
    )
    up.add_argument("--wait", type=float, default=WAIT_SECONDS, help=WAIT_HELP)
    up.set_defaults(fn=cmd_up)

    down = sub.add_parser("down", help="stop what `waymark up` started")
    down.add_argument("--apps-only", action="store_true", help="leave the infrastructure up")
    down.add_argument("--wait", type=float, default=WAIT_SECONDS, help=WAIT_HELP)
    down.set_defaults(fn=cmd_down)

    st = sub.add_parser("status", help="each part: pid, port, health, URLs")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    logs = sub.add_parser("logs", help="show a part's log")
    logs.add_argument("part")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(fn=cmd_logs)

    identity_cli.add_commands(sub)

    mig = sub.add_parser(
        "migrate", help="create the database, run every service's migrations, create missing keys"
    )
    mig.set_defaults(fn=cmd_migrate)

    pgs = sub.add_parser("pg-secrets", help="make a password file for each database role")
    pgs.add_argument(
        "--compose",
        action="store_true",
        help="for docker-compose.yml (with the image superuser's; readable files "
        "in a private folder, as Compose bind-mounts them)",
    )
    pgs.add_argument("--dir", default="", help="where (default: the settings' or Compose's)")
    pgs.set_defaults(fn=cmd_pg_secrets)

    top = sub.add_parser("topics", help="create the Kafka topics")
    top.add_argument("--replication", type=int, default=1)
    top.set_defaults(fn=cmd_topics)

    sch = sub.add_parser("schemas", help="export or check the events' JSON Schemas")
    sch.add_argument("action", choices=["export", "check"])
    sch.set_defaults(fn=cmd_schemas)

    seed = sub.add_parser(
        "seed",
        help="load synthetic demo data through the APIs, and a synthetic population's "
        "history through the bulk importer",
    )
    seed.add_argument(
        "--people",
        type=_non_negative,
        default=POPULATION_PEOPLE,
        help=f"people in the synthetic population (default {POPULATION_PEOPLE}; "
        "0 for none); a smaller one is the start of a larger one",
    )
    seed.add_argument(
        "--population-seed",
        type=int,
        default=POPULATION_SEED,
        help=f"another population: other people and referrals (default "
        f"{POPULATION_SEED}, the demo's; seeding with it again adds nothing)",
    )
    seed.set_defaults(fn=cmd_seed)

    ob = sub.add_parser("outbox", help="list parked outbox rows, or put them back in line")
    ob.add_argument("action", choices=["parked", "redrive"])
    ob.add_argument("schema", choices=list(SERVICE_SCHEMAS))
    ob.add_argument("event_id", nargs="*", help="redrive only these (default: all parked)")
    ob.set_defaults(fn=cmd_outbox)

    dl = sub.add_parser(
        "dlq", help="list dead letters of a topic, or re-drive them to it once the cause is fixed"
    )
    dl.add_argument("action", choices=["list", "redrive"])
    dl.add_argument("topic", help="e.g. waymark.referrals.v1 (the instance's prefix is added)")
    dl.add_argument(
        "--consumer",
        help="only the dead letters of this consumer (its group name, e.g. notifications)",
    )
    dl.add_argument(
        "--offset",
        action="append",
        metavar="[PARTITION:]OFFSET",
        help="redrive only these dead letters (repeatable; offsets on the .dlq topic "
        "as `list` prints them)",
    )
    dl.add_argument("--dry-run", action="store_true", help="say what would be republished")
    dl.add_argument(
        "--force",
        action="store_true",
        help="also republish messages that still cannot be events (they go round "
        "once and land in the DLQ again)",
    )
    dl.set_defaults(fn=cmd_dlq)

    from devtools.integration_cli import add_parsers
    from devtools.temporal_cli import add_parsers as add_temporal_parsers

    add_parsers(sub)
    add_temporal_parsers(sub)

    run = sub.add_parser("run", help="run one Waymark part in the foreground")
    run.add_argument("part")
    run.set_defaults(fn=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # readiness probes expect refused connections while a part starts; don't print them
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["import"]:  # the importer's own arguments, --help included
        from services.integration.importer.__main__ import main as importer

        return importer(given[1:])
    args = build_parser().parse_args(given)
    return int(args.fn(args, get_settings()) or 0)


def entry() -> None:
    """Console entry point. Exits without interpreter finalisation: the Temporal client's
    native (Rust) runtime threads can abort a finalising interpreter (PyGILState_Release),
    turning a successful command into a crash at exit."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
