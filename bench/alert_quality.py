"""Alert quality: precision and recall of each journey rule over labelled synthetic journeys run
through the real stack (issue #15, docs/clinical-safety/rule-performance.md).

The generator (devtools/synthetic/) gives each journey the exact set of rules that
must fire for it under alert rules version 2. The journeys' referral events are published to
Kafka as the referrals service would (`synthetic.publish`); the real bridge signals the real
Temporal worker, whose journeys raise alerts into the journeys schema (`journey_alert`). Each
(patient, rule) row is then a true positive, a false positive or (a label with no row) a false
negative.

Nothing is printed as a figure unless every journey was processed: every event applied, every
workflow running, nothing dead-lettered, every query answered. Exit status: 0 when the
clear-cut labels are met exactly (precision and recall 1.0 for every rule), 1 when a clear-cut
label is missed or an alert is extra, 2 when anything failed (no figures). Ambiguous templates
(`synthetic.AMBIGUOUS`) are reported apart and do not decide the exit status.

Run on demand: `python -m bench.alert_quality [--journeys 2000] [--seed N] [--months 12]`.
Works as the `bench` instance unless WAYMARK_* say otherwise (like bench/journeys.py).
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
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from sqlalchemy import text  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.journeys import bounded, until_drained  # noqa: E402
from devtools import stack  # noqa: E402
from devtools.synthetic import AMBIGUOUS, SyntheticJourney, generate, publish  # noqa: E402
from shared.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from shared.kafka_security import client_options  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402
from shared.temporal_client import connect as connect_temporal  # noqa: E402
from shared.topics import REFERRALS  # noqa: E402
from workflows.journeys import workflow_id  # noqa: E402
from workflows.journeys.rules import load_rules  # noqa: E402
from workflows.journeys.workflows import PatientJourney  # noqa: E402

RULE_ORDER = (
    "stalled.not_triaged",
    "stalled.not_booked",
    "stalled.no_outcome",
    "stalled.no_activity",
    "stalled.rtt_breach",
    "stalled.no_next_step",
    "looping.re_referral",
    "looping.ping_pong",
    "looping.returned_repeatedly",
    "looping.closed_doors",
    "looping.frequent_contact",
    # contact rules (issue #17): listed for the order of the table; the generator publishes no
    # encounter events yet, so a run measures none of them
    "looping.frequent_attender",
    "looping.repeated_ae_pain",
    "stalled.unplanned_while_waiting",
)


@dataclass
class Failures:
    """Everything that means a journey was not (or not visibly) processed."""

    not_applied: list[str] = field(default_factory=list)  # events applied != published
    query_failed: list[str] = field(default_factory=list)
    not_running: int = 0  # PatientJourney workflows of this run failed / terminated
    dead_letters: int = 0  # new messages on the referrals topic's dead-letter queue
    published: int = 0
    expected_events: int = 0

    def count(self) -> int:
        return (
            len(self.not_applied)
            + len(self.query_failed)
            + self.not_running
            + self.dead_letters
            + (self.published != self.expected_events)
        )


async def dlq_size(s: Settings) -> int:
    consumer = AIOKafkaConsumer(**client_options(s))
    await consumer.start()
    try:
        topic = f"{s.topic(REFERRALS)}.dlq"
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            return 0
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def applied_counts(
    client: Client, journeys: list[SyntheticJourney]
) -> dict[str, int | BaseException]:
    out: dict[str, int | BaseException] = {}

    async def one(j: SyntheticJourney) -> None:
        try:
            view = await client.get_workflow_handle(workflow_id(j.patient_id)).query(
                PatientJourney.journey
            )
            out[j.patient_id] = view.events_applied
        except Exception as exc:  # reported as a failure, never swallowed
            out[j.patient_id] = exc

    await bounded(50, (one(j) for j in journeys))
    return out


async def alert_rows(s: Settings, prefix: str) -> set[tuple[str, str]]:
    engine = make_engine(s, "journeys")
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            rows = (
                await session.exec(
                    text(  # type: ignore[call-overload]
                        "SELECT patient_id, rule FROM journey_alert WHERE patient_id LIKE :p"
                    ).bindparams(p=f"{prefix}_%")
                )
            ).all()
        return {(r.patient_id, r.rule) for r in rows}
    finally:
        await engine.dispose()


def score(
    journeys: list[SyntheticJourney], got: set[tuple[str, str]]
) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]], list[dict[str, object]]]:
    """Per rule TP/FP/FN over the clear-cut journeys; per ambiguous template agree/differ;
    the journeys whose alerts differ from their labels."""
    per_rule: dict[str, Counter[str]] = defaultdict(Counter)
    ambiguous: dict[str, Counter[str]] = defaultdict(Counter)
    wrong: list[dict[str, object]] = []
    for j in journeys:
        raised = {r for p, r in got if p == j.patient_id}
        if not j.clear_cut:
            ambiguous[j.template]["as labelled" if raised == j.expected_rules else "differ"] += 1
            for r in raised ^ j.expected_rules:
                ambiguous[j.template][("extra " if r in raised else "missing ") + r] += 1
        else:
            for r in raised | j.expected_rules:
                per_rule[r][
                    "tp" if r in raised and r in j.expected_rules else "fp" if r in raised else "fn"
                ] += 1
        if raised != j.expected_rules:
            wrong.append(
                {
                    "patient_id": j.patient_id,
                    "template": j.template,
                    "clear_cut": j.clear_cut,
                    "expected": sorted(j.expected_rules),
                    "raised": sorted(raised),
                    "events": [asdict(e) for e in j.events],
                }
            )
    return per_rule, ambiguous, wrong


def table(per_rule: dict[str, Counter[str]]) -> str:
    lines = ["| rule | TP | FP | FN | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for rule in sorted(
        per_rule, key=lambda r: (RULE_ORDER.index(r) if r in RULE_ORDER else len(RULE_ORDER), r)
    ):
        c = per_rule[rule]
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        precision = f"{tp / (tp + fp):.3f}" if tp + fp else "n/a"
        recall = f"{tp / (tp + fn):.3f}" if tp + fn else "n/a"
        lines.append(f"| `{rule}` | {tp} | {fp} | {fn} | {precision} | {recall} |")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument(
        "--months",
        type=int,
        default=12,
        help="spread the journeys that allow it over this many months (0: no)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for every event to be applied"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("bench/results"),
        help="folder for the JSON of the run (mismatched journeys in full)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    s = get_settings()
    await stack.up(s, infra_only=True)
    for name in ("journeys-worker", "journeys-bridge", "journeys-relay"):
        stack.part_by_name(name).stop(s)  # the code as it is now, an empty workflow cache
        await stack.part_by_name(name).start(s)
    client = await connect_temporal(s)
    await until_drained(s, 600)  # anything left from an earlier run
    dlq_before = await dlq_size(s)
    rules = load_rules()

    run = uuid.uuid4().hex[:6]
    prefix = f"pt_q{run}"
    now = datetime.now(UTC)
    journeys = generate(
        args.journeys, seed=args.seed, now=now, patient_prefix=prefix, months=args.months or None
    )
    failures = Failures(expected_events=sum(len(j.events) for j in journeys))
    t0 = time.perf_counter()
    failures.published = await publish(journeys, settings=s, topic=s.topic(REFERRALS))
    await until_drained(s, args.timeout)

    # every journey has applied every one of its events
    # (asking only those still behind: a query of a journey the worker's cache has evicted
    # replays its history, so asking all of them again and again would keep the worker busy)
    deadline = time.monotonic() + args.timeout
    behind = journeys
    counts: dict[str, int | BaseException] = {}
    while True:
        counts |= await applied_counts(client, behind)
        behind = [j for j in behind if counts[j.patient_id] != len(j.events)]
        if not behind or time.monotonic() > deadline:
            break
        print(f"{len(behind)} journeys still applying their events", file=sys.stderr, flush=True)
        await asyncio.sleep(5)
    failures.not_applied = [
        j.patient_id for j in behind if not isinstance(counts[j.patient_id], BaseException)
    ]
    failures.query_failed = [
        j.patient_id for j in behind if isinstance(counts[j.patient_id], BaseException)
    ]
    applied_s = time.perf_counter() - t0

    # stalls are judged once a journey's events have settled; then wait for the read model
    # to stop changing
    await asyncio.sleep(rules.settle_seconds + 20)
    got = await alert_rows(s, prefix)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 20:
        await asyncio.sleep(5)
        again = await alert_rows(s, prefix)
        if again != got:
            got, quiet_since = again, time.monotonic()
    failures.not_running = (
        await client.count_workflows(
            f"WorkflowType = 'PatientJourney' AND ExecutionStatus != 'Running' "
            f"AND ExecutionStatus != 'ContinuedAsNew' AND WorkflowId STARTS_WITH "
            f"'{workflow_id(prefix)}'"
        )
    ).count
    failures.dead_letters = await dlq_size(s) - dlq_before

    print(
        f"alert quality: {len(journeys)} journeys, seed {args.seed}, months "
        f"{args.months or 0}, generated at {now.isoformat(timespec='seconds')}, run {run}"
    )
    print(
        f"events published {failures.published} of {failures.expected_events}; all applied "
        f"in {applied_s:.0f} s; alert rows {len(got)}"
    )
    per_rule, ambiguous, wrong = score(journeys, got)
    args.report.mkdir(parents=True, exist_ok=True)
    out = args.report / f"alert-quality-{now:%Y-%m-%d-%H%M}-{run}.json"
    out.write_text(
        json.dumps(
            {
                "seed": args.seed,
                "journeys": len(journeys),
                "months": args.months,
                "generated_at": now.isoformat(),
                "failures": asdict(failures),
                "per_rule": {r: dict(c) for r, c in per_rule.items()},
                "ambiguous": {t: dict(c) for t, c in ambiguous.items()},
                "mismatches": wrong,
            },
            indent=1,
            default=str,
        )
    )
    if failures.count():
        print(
            f"FAILED, no figures: {failures.count()} failures "
            f"(not applied {len(failures.not_applied)}, queries failed "
            f"{len(failures.query_failed)}, workflows not running {failures.not_running}, "
            f"dead letters {failures.dead_letters}, published {failures.published} of "
            f"{failures.expected_events}); details in {out}",
            file=sys.stderr,
        )
        return 2
    templates = Counter(j.template for j in journeys)
    clear = sum(1 for j in journeys if j.clear_cut)
    print(f"\nclear-cut journeys: {clear} ({len(templates) - len(AMBIGUOUS)} templates)\n")
    print(table(per_rule))
    print(f"\nambiguous journeys: {len(journeys) - clear}\n")
    print("| template | journeys | as labelled | differences |\n|---|---:|---:|---|")
    for t in sorted(AMBIGUOUS):
        c = ambiguous.get(t, Counter())
        diffs = (
            ", ".join(
                f"{k} ({v})" for k, v in sorted(c.items()) if k not in ("as labelled", "differ")
            )
            or "none"
        )
        print(f"| `{t}` | {templates[t]} | {c['as labelled']} | {diffs} |")
    clear_wrong = [w for w in wrong if w["clear_cut"]]
    by_template = Counter(str(w["template"]) for w in clear_wrong)
    print(
        f"\nclear-cut journeys whose alerts differ from their labels: {len(clear_wrong)}"
        + (f" (by template: {dict(by_template)})" if clear_wrong else "")
    )
    print(f"details: {out}")
    return 1 if clear_wrong else 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)  # the Temporal runtime's threads can abort a finalising interpreter
