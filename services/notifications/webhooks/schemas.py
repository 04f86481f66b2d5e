"""Request and response bodies of the partner webhook API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.notifications.openapi_names import published_as

_CONTROL = set(chr(c) for c in range(32)) | {"\x7f"}


def _printable(v: str) -> str:
    if any(ch in _CONTROL for ch in v):
        raise ValueError("must not contain control characters such as NUL or newlines")
    return v


def _utc(v: datetime) -> datetime:
    # an offset that pushes a date past year 1 or 9999 cannot be stored or compared
    try:
        return v.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("must be a date and time between the years 1 and 9999") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Description = Annotated[str, Field(max_length=500), AfterValidator(_printable)]
EventType = Annotated[
    str, Field(min_length=1, max_length=120, examples=["uk.waymark.referral.accepted"])
]
CategoryCode = Annotated[
    str, Field(pattern=r"^[a-z0-9_-]{1,60}$", examples=["pain_management_programme"])
]
SubscriptionStatus = Literal["active", "paused", "disabled"]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(Strict):
    """All optional; an event must pass every filter given."""

    service_categories: list[CategoryCode] | None = Field(
        default=None,
        max_length=50,
        description="only referrals to services of these directory categories",
    )
    priorities: list[Literal["routine", "urgent"]] | None = Field(default=None, max_length=2)
    role: Literal["sender", "receiver"] | None = Field(
        default=None,
        description="sender: referrals your organisation made; receiver: "
        "referrals made to your organisation",
    )


class SubscriptionCreate(Strict):
    url: str = Field(
        max_length=2000,
        examples=["https://partner.example/waymark/webhooks"],
        description="https:// (http:// only in local mode); in production it "
        "must resolve to public addresses only",
    )
    event_types: list[EventType] = Field(min_length=1, max_length=30)
    filters: Filters = Field(default_factory=Filters)
    description: Description | None = None


class SubscriptionUpdate(Strict):
    """Only the fields given change."""

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=30)
    filters: Filters | None = None
    description: Description | None = None


class SubscriptionOut(BaseModel):
    id: str
    org: str
    url: str
    description: str | None
    event_types: list[str]
    filters: dict[str, Any]
    status: SubscriptionStatus
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation, the previous secret also signs until then"
    )
    created_by: str
    created_at: datetime
    updated_at: datetime
    version: int


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(
        description="whsec_ + base64 key: shown only now; verify deliveries "
        "with it (Standard Webhooks)"
    )


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header, the same on every attempt and resend")
    subscription_id: str
    event_id: str
    event_type: str
    event_time: datetime
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="when pending: the next attempt")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


published_as(DeliveryOut, "services.notifications.webhook_schemas")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="the CloudEvent as sent")
    attempt_log: list[AttemptOut]


class ResendRange(Strict):
    since: UtcDatetime = Field(description="deliveries queued at or after this time")
    until: UtcDatetime | None = Field(default=None, description="and before this (now if absent)")
    only_failed: bool = Field(default=False, description="only deliveries that ran out of retries")


class ResendOut(BaseModel):
    resent: int
