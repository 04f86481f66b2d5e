"""Find and repair journeys whose workflow tasks keep failing (HAZ-100).

A journey whose workflow task fails for ever raises no alert again: its stalls and loops go
unseen. Temporal flags a workflow after two task failures in a row (`TemporalReportedProblems`);
the journeys worker counts the flagged journeys every minute and logs them as errors
(`watch_failing`). This module lists them, finds journeys that will fail at their next replay
(the HAZ-100 shape: the patches recorded in a later workflow task than the rules' local
activity), and resets them to their first workflow task: the journey starts afresh with
today's code, its input (the journey carried over) and every signal it was sent, applied again
(alerts are idempotent by id and sequence, so one already raised is not raised twice).

    python -m workflows.journeys.repair              # list failing journeys
    python -m workflows.journeys.repair --scan       # also read every running journey's history
    python -m workflows.journeys.repair --reset      # reset what was found
    python -m workflows.journeys.repair --replay     # can today's code replay every journey?
    python -m workflows.journeys.repair --replay --reset   # and reset those it cannot

`--replay` is the check before a new worker is deployed (and after): every running journey's
history replayed with this checkout's workflow code, the ones it cannot replay listed (and,
with `--reset`, started afresh from their first task with today's code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from opentelemetry import metrics
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus

from shared import temporal_client
from shared.settings import get_settings

logger = logging.getLogger(__name__)

RUNNING = 'WorkflowType = "PatientJourney" AND ExecutionStatus = "Running"'
FAILING = RUNNING + " AND TemporalReportedProblems IS NOT NULL"
#: the patch under which today's code decides every patch before the rules load
PATCHES_FIRST = "patches-before-rules"
NONDETERMINISM = "cause=WorkflowTaskFailedCauseNonDeterministicError"

_failing_gauge = metrics.get_meter(__name__).create_gauge(
    "waymark.journeys.failing_tasks",
    description="running journeys whose workflow tasks have failed twice or more in a row",
)


@dataclass
class Finding:
    workflow_id: str
    run_id: str
    problems: list[str] = field(default_factory=list)
    split_before_patches: bool = False

    @property
    def repairable(self) -> bool:
        """A reset repairs a journey whose recorded decisions today's code cannot replay."""
        return self.split_before_patches or NONDETERMINISM in self.problems


def split_before_patches(events: Iterable[HistoryEvent]) -> bool:
    """True for a history in the HAZ-100 shape: recorded before its patches were decided first,
    with a workflow task boundary between the rules' local activity marker and its patches."""
    seen_local_activity = False
    boundary = False
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            if attrs.marker_name == "core_patch":
                patch = json.loads(attrs.details["patch-data"].payloads[0].data)["id"]
                if patch == PATCHES_FIRST:
                    return False
                return seen_local_activity and boundary
            if attrs.marker_name == "core_local_activity":
                seen_local_activity = True
        elif seen_local_activity and event.event_type in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        ):
            boundary = True
    return False


async def _head(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    """The first events of a run's history (enough to see how its first tasks were recorded)."""
    events: list[HistoryEvent] = []
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events(page_size=64):
        events.append(event)
        if len(events) >= 64:
            break
    return events


async def find(
    client: Client, *, scan: bool = False, concurrency: int = 16
) -> AsyncIterator[Finding]:
    """Journeys flagged by Temporal as failing their tasks; with `scan`, also running journeys
    whose history is in the HAZ-100 shape (one history read a journey)."""
    gate = asyncio.Semaphore(concurrency)

    async def check(finding: Finding) -> Finding:
        async with gate:
            events = await _head(client, finding.workflow_id, finding.run_id)
        finding.split_before_patches = split_before_patches(events)
        return finding

    seen: set[str] = set()
    flagged = []
    async for wf in client.list_workflows(FAILING):
        problems = list(wf.search_attributes.get("TemporalReportedProblems", []))
        flagged.append(Finding(wf.id, wf.run_id, problems=problems))
        seen.add(wf.run_id)
    for finding in await asyncio.gather(*(check(f) for f in flagged)):
        yield finding
    if not scan:
        return
    batch: list[asyncio.Task[Finding]] = []
    async for wf in client.list_workflows(RUNNING):
        if wf.run_id in seen:
            continue
        batch.append(asyncio.create_task(check(Finding(wf.id, wf.run_id))))
        if len(batch) >= 256:
            for finding in await asyncio.gather(*batch):
                if finding.split_before_patches:
                    yield finding
            batch = []
    for finding in await asyncio.gather(*batch):
        if finding.split_before_patches:
            yield finding


async def reset_to_first_task(client: Client, finding: Finding, reason: str) -> str:
    """Reset the run to its first workflow task, signals applied again; the new run's id.
    Idempotent per run: a run already closed (reset before, or ended) is left alone and the
    journey's current run returned."""
    run = client.get_workflow_handle(finding.workflow_id, run_id=finding.run_id)
    if (await run.describe()).status != WorkflowExecutionStatus.RUNNING:
        return (await client.get_workflow_handle(finding.workflow_id).describe()).run_id
    events = await _head(client, finding.workflow_id, finding.run_id)
    first = next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        or e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    )
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(
                workflow_id=finding.workflow_id, run_id=finding.run_id
            ),
            reason=reason,
            workflow_task_finish_event_id=first,
            request_id=f"repair-{finding.run_id}",
            reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL,
        )
    )
    return response.run_id


async def count_failing(client: Client) -> int:
    return (await client.count_workflows(FAILING)).count


async def watch_failing(client: Client, stop: asyncio.Event, every_seconds: float) -> None:
    """In the journeys worker: count the journeys failing their tasks, as a metric, and log an
    error naming them while there are any (the operator repairs them with this module)."""
    while not stop.is_set():
        try:
            failing = await count_failing(client)
            _failing_gauge.set(failing)
            if failing:
                ids = [wf.id async for wf in client.list_workflows(FAILING, limit=10)]
                logger.error(
                    "%d journeys are failing their workflow tasks and raise no alerts (e.g. %s):"
                    " python -m workflows.journeys.repair --scan --reset",
                    failing,
                    ", ".join(ids),
                )
        except Exception:  # the watch must never stop the worker
            logger.exception("could not count failing journeys")
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_seconds)
        except TimeoutError:
            pass


async def replay_all(client: Client, where: str | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Replay every running journey's history (those `where` also selects) with today's code:
    (how many, [(workflow id, why) for each that fails])."""
    from temporalio.worker import Replayer

    from workflows.journeys.workflows import PatientJourney

    replayer = Replayer(workflows=[PatientJourney], data_converter=client.data_converter)
    query = RUNNING if where is None else f"{RUNNING} AND ({where})"
    histories = client.list_workflows(query).map_histories()
    count, failures = 0, []
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            count += 1
            if result.replay_failure is not None:
                failures.append((result.history.workflow_id, str(result.replay_failure)))
            if count % 5000 == 0:
                logger.warning("%d replayed, %d failed", count, len(failures))
    return count, failures


async def reset_unreplayable(client: Client, failures: list[tuple[str, str]]) -> list[str]:
    """Reset each journey today's code cannot replay to its first task; the new runs' ids."""
    runs = []
    for workflow_id, _ in failures:
        current = await client.get_workflow_handle(workflow_id).describe()
        finding = Finding(workflow_id, current.run_id)
        runs.append(await reset_to_first_task(client, finding, "repair: replay today's code"))
    return runs


async def repair(client: Client, *, scan: bool, reset: bool) -> list[Finding]:
    findings = []
    async for finding in find(client, scan=scan):
        findings.append(finding)
        shape = "HAZ-100 split" if finding.split_before_patches else "-"
        action = "listed"
        if reset and finding.repairable:
            run = await reset_to_first_task(client, finding, "HAZ-100 repair: replay today's code")
            action = f"reset, new run {run}"
        elif reset:
            action = "not reset: not a replay failure, see the worker's log"
        print(f"{finding.workflow_id}\t{shape}\t{';'.join(finding.problems) or '-'}\t{action}")
    return findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", action="store_true", help="read every running journey")
    parser.add_argument("--reset", action="store_true", help="reset the journeys found")
    parser.add_argument("--replay", action="store_true", help="replay every running journey")
    parser.add_argument("--where", help="with --replay: only the journeys this query selects")
    args = parser.parse_args()
    if args.replay:

        async def check() -> tuple[int, list[tuple[str, str]]]:
            client = await temporal_client.connect(get_settings())
            count, failures = await replay_all(client, args.where)
            for workflow_id, why in failures:
                print(f"{workflow_id}\t{why[:300]}")
            if args.reset:
                runs = await reset_unreplayable(client, failures)
                print(f"{len(runs)} journeys reset to their first task")
            return count, failures

        count, failures = asyncio.run(check())
        print(f"{count} running journeys replayed, {len(failures)} failed")
        raise SystemExit(1 if failures and not args.reset else 0)

    async def run() -> list[Finding]:
        client = await temporal_client.connect(get_settings())
        return await repair(client, scan=args.scan, reset=args.reset)

    findings = asyncio.run(run())
    repairable = sum(f.repairable for f in findings)
    print(f"{len(findings)} journeys found, {repairable} repairable by a reset")


if __name__ == "__main__":
    main()
