"""A journey as code deployed earlier decided it (for tests/journeys/test_repair.py): a timer
before anything today's code does. Today's worker cannot replay it, as it could not replay
HAZ-100's split histories. A module of its own: the workflow sandbox imports it afresh."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.journeys.workflows import JourneyInput, PatientJourney


@workflow.defn(name="PatientJourney")
class EarlierJourney(PatientJourney):
    @workflow.run
    async def run(self, input: JourneyInput) -> None:
        await workflow.sleep(timedelta(hours=1))
        await super().run(input)
