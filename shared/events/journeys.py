"""Events published by the journey workflows on `waymark.journeys.v1`: alerts and their
changes. The subject is the patient's pseudonymous id. The plain-English explanation stays in
the read model (fetched through the API that checks who is asking); events carry codes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE


class AlertEventData(EventData):
    SOURCE = "waymark/journeys"

    alert_id: str = Field(max_length=300)
    # pathway: a screening result whose matching pathway (e.g. psychologically informed
    # physiotherapy for STarT Back high) the person may not be on
    kind: Literal["stalled", "looping", "safety", "pathway"]
    rule: str = Field(max_length=60)
    severity: Literal["urgent", "high", "medium"]
    # progressing: the cause has gone (the person has since been accepted and treated); the
    # alert leaves the action worklist but stays visible until a coordinator resolves it
    status: Literal["open", "acknowledged", "escalated", "resolved", "snoozed", "progressing"]
    referral_ids: list[str] = Field(default_factory=list, max_length=50)
    assignee: str | None = Field(default=None, max_length=300)
    seq: int = Field(ge=1)
    # organisations (ODS codes) the alert is addressed to besides the ICS's coordinators: the
    # referrer of a referral closed with no next step; the GP practice and the plan holder of a
    # PHQ-9 item 9 answer above 0. Optional: version 1 consumers read it or ignore it.
    recipient_orgs: list[Annotated[str, Field(pattern=ORG_CODE)]] = Field(
        default_factory=list, max_length=10
    )


def _event(change: str) -> type[AlertEventData]:
    cls = type(
        f"Alert{change.title()}",
        (AlertEventData,),
        {"EVENT_TYPE": f"uk.waymark.journey.alert.{change}", "VERSION": 1, "__module__": __name__},
    )
    REGISTRY.register(cls)
    return cls


#: the event each alert change publishes
ALERT_EVENTS: dict[str, type[AlertEventData]] = {
    change: _event(change)
    for change in (
        "raised",
        "escalated",
        "acknowledged",
        "assigned",
        "snoozed",
        "reopened",
        "resolved",
        "progressing",
    )
}
