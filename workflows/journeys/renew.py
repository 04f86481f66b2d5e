"""Renew running journeys: every running PatientJourney continues as new with its journey so
far and loads the rules afresh. Run it after changing rules.toml or deploying a new version of
the rules, so journeys already running take them up (a journey otherwise takes them up at its
next continue-as-new).

    python -m workflows.journeys.renew            # every running journey
    python -m workflows.journeys.renew --dry-run  # count them
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio.client import Client

from shared.settings import get_settings
from workflows.journeys.worker import connect
from workflows.journeys.workflows import PatientJourney

QUERY = 'WorkflowType = "PatientJourney" AND ExecutionStatus = "Running"'


async def renew_all(client: Client, *, dry_run: bool = False, concurrency: int = 32) -> int:
    """Signal `renew` to every running journey; how many there were."""
    gate = asyncio.Semaphore(concurrency)
    count = 0
    tasks = []

    async def one(workflow_id: str) -> None:
        async with gate:
            await client.get_workflow_handle(workflow_id).signal(PatientJourney.renew)

    async for wf in client.list_workflows(QUERY):
        count += 1
        if not dry_run:
            tasks.append(asyncio.create_task(one(wf.id)))
    await asyncio.gather(*tasks)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="count, signal nothing")
    args = parser.parse_args()

    async def run() -> int:
        return await renew_all(await connect(get_settings()), dry_run=args.dry_run)

    n = asyncio.run(run())
    print(f"{n} running journeys {'found' if args.dry_run else 'renewed'}")


if __name__ == "__main__":
    main()
