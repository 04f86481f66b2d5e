"""Events published by the journey workflows on `waymark.journeys.v1`: alerts and their
changes. The subject is the patient's pseudonymous id. The plain-English explanation stays in
the read model (fetched through the API that checks who is asking); events carry codes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY


class AlertEventData(EventData):
    SOURCE = "waymark/journeys"

    alert_id: str = Field(max_length=300)
    kind: Literal["stalled", "looping", "safety"]
    rule: str = Field(max_length=60)
    severity: Literal["urgent", "high", "medium"]
    status: Literal["open", "acknowledged", "escalated", "resolved", "snoozed"]
    referral_ids: list[str] = Field(default_factory=list, max_length=50)
    assignee: str | None = Field(default=None, max_length=300)
    seq: int = Field(ge=1)


def _event(change: str) -> type[AlertEventData]:
    cls = type(f"Alert{change.title()}", (AlertEventData,),
               {"EVENT_TYPE": f"uk.waymark.journey.alert.{change}", "VERSION": 1,
                "__module__": __name__})
    REGISTRY.register(cls)
    return cls


#: the event each alert change publishes
ALERT_EVENTS: dict[str, type[AlertEventData]] = {
    change: _event(change) for change in
    ("raised", "escalated", "acknowledged", "assigned", "snoozed", "reopened", "resolved")}
