"""Request and response bodies of people's messages: staff's own preferences, the in-app
inbox and the delivery log (api.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.notifications.messages import domain as rules
from services.notifications.openapi_names import published_as

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Literal["email", "sms", "in_app"]] = Field(
        min_length=1, max_length=3, description="the channels to use, first choice first"
    )
    email: str | None = Field(default=None, max_length=254, description="a work email")
    mobile: str | None = Field(default=None, max_length=20, description="a UK mobile number")
    quiet_start: str | None = Field(
        default=None,
        pattern=_HHMM,
        description="UK time HH:MM; email and SMS wait until "
        "quiet_end (the in-app inbox never waits)",
    )
    quiet_end: str | None = Field(default=None, pattern=_HHMM)
    language: str = Field(
        default="en", pattern=r"^[a-z]{2,3}$", description="ISO 639 code, e.g. en, cy"
    )
    variant: Literal["plain", "easy_read", "large_print"] = "plain"

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("name each channel once")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not rules.is_email(v):
            raise ValueError("must be an email address such as name@example.nhs.uk")
        return v.strip() if v else v

    @field_validator("mobile")
    @classmethod
    def _mobile(cls, v: str | None) -> str | None:
        if v is None:
            return v
        normalised = rules.uk_mobile(v)
        if normalised is None:
            raise ValueError("must be a UK mobile number such as 07700 900123")
        return normalised

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceIn:
        if "email" in self.channels and not self.email:
            raise ValueError("the email channel needs an email address")
        if "sms" in self.channels and not self.mobile:
            raise ValueError("the sms channel needs a mobile number")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("give both quiet_start and quiet_end, or neither")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet_start and quiet_end must differ")
        return self


class PreferenceOut(BaseModel):
    user_id: str
    org: str
    channels: list[str]
    email: str | None
    mobile: str | None
    quiet_start: str | None
    quiet_end: str | None
    language: str
    variant: str
    version: int = Field(
        description='0: never set (the defaults); send If-Match: W/"0" to set them the first time'
    )


class InboxItemOut(BaseModel):
    id: str
    owner: str = Field(description="user:<you> or org:<your organisation> (the team's)")
    org: str
    message_id: str | None
    referral_id: str | None
    subject: str
    body: str
    variant: str
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    total: int = Field(description="items matching the filter")
    unread: int = Field(description="unread items in your inbox and your team's")
    limit: int
    offset: int


class DeliveryOut(BaseModel):
    id: str
    recipient: str = Field(
        description="user:<id>, org:<code> (a team's inbox), "
        "service:<id> (its mailbox), person, carer:<id>"
    )
    channel: str = Field(description="email, sms, in_app, or none (nothing could be tried)")
    variant: str
    language: str
    attempt: int
    status: str = Field(description="sent, failed (final for this recipient), retrying, held")
    provider_ref: str | None
    error: str | None
    note: str | None
    at: datetime


published_as(DeliveryOut, "services.notifications.api_messages")


class MessageOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    audience: str
    template: str
    referral_id: str | None
    patient_id: str | None
    org: str | None
    context: dict[str, Any]
    status: str = Field(description="pending, held, sent, partly_sent, failed, skipped")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    deliveries: list[DeliveryOut]
