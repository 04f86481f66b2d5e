"""The CloudEvents 1.0 envelope every Waymark event travels in (JSON structured mode).

`subject` is the patient's pseudonymous id for every patient event (the directory's events,
which concern no patient, use the service id). Events never carry names, NHS numbers or free
text; those are fetched through the owning API, which checks who is asking.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SPEC_VERSION = "1.0"
SCHEMA_BASE = "https://waymark.nhs.example/schemas/events/"


class EventData(BaseModel):
    """Base of every event's `data`. Subclasses set EVENT_TYPE and VERSION."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    EVENT_TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    SOURCE: ClassVar[str] = ""

    @classmethod
    def schema_id(cls) -> str:
        return f"{SCHEMA_BASE}{cls.EVENT_TYPE}.v{cls.VERSION}.json"


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    specversion: str = SPEC_VERSION
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=120)
    subject: str = Field(min_length=1, max_length=80)
    time: AwareDatetime
    dataschema: str
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.dataschema.rsplit(".v", 1)[1].split(".")[0])


def make_event(
    data: EventData, *, subject: str, event_id: str | None = None, time: datetime | None = None
) -> CloudEvent:
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=data.SOURCE,
        type=data.EVENT_TYPE,
        subject=subject,
        time=time or datetime.now(UTC),
        dataschema=data.schema_id(),
        data=data.model_dump(mode="json"),
    )
