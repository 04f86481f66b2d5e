"""Events published by the directory service on `waymark.directory.v1`.

The CloudEvent `subject` of a directory event is the service id (there is no patient); the
relay keys messages by it, so one service's events stay in order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE

ServiceStatus = Literal["active", "inactive", "defunct", "temporarily closed"]


class DirectoryServiceEventData(EventData):
    SOURCE = "waymark/directory"

    service_id: str = Field(max_length=64)
    organization_id: str = Field(max_length=64)
    # the organisation code referrals are addressed to (ODS-style)
    org_code: str = Field(pattern=ORG_CODE)
    category: str = Field(max_length=60)
    conditions: list[str] = Field(default_factory=list, max_length=10)
    status: ServiceStatus
    self_referral: bool = False
    waiting_weeks: int | None = Field(default=None, ge=0, le=520)


@REGISTRY.register
class ServicePublished(DirectoryServiceEventData):
    EVENT_TYPE = "uk.waymark.directory.service.published"
    VERSION = 1


@REGISTRY.register
class ServiceUpdated(DirectoryServiceEventData):
    EVENT_TYPE = "uk.waymark.directory.service.updated"
    VERSION = 1


@REGISTRY.register
class ServiceWithdrawn(DirectoryServiceEventData):
    EVENT_TYPE = "uk.waymark.directory.service.withdrawn"
    VERSION = 1
    reason: str = Field(default="", max_length=200)
