"""Events published by the notifications service on `waymark.notifications.v1`.

`AlertActionTaken` is what the coordinators' inbox publishes when a person acts on a journey
alert; the bridge turns it into the patient's PatientJourney `alert_action` signal. The
subject is the patient's pseudonymous id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY


@REGISTRY.register
class AlertActionTaken(EventData):
    EVENT_TYPE = "uk.waymark.notifications.alert-action.taken"
    VERSION = 1
    SOURCE = "waymark/notifications"

    alert_id: str = Field(max_length=300)
    action: Literal["acknowledge", "assign", "resolve", "snooze"]
    actor: str = Field(max_length=300)  # the coordinator's identity (sub@issuer), not a name
    assignee: str | None = Field(default=None, max_length=300)
    # a coded resolution: why the alert is closed
    resolution: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,60}$")
    snooze_until: AwareDatetime | None = None
