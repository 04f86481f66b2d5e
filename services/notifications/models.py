"""The notifications service's tables (schema `notifications`); DDL in migrations/."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    Text,
    Time,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = False, default: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=func.now() if default else None,
        ),
    )


class ReferralIndex(SQLModel, table=True):
    """Which organisations a referral concerns, kept from its events."""

    __tablename__ = "referral_index"

    referral_id: str = Field(sa_column=Column(Text, primary_key=True))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    from_org: str = Field(sa_column=Column(Text, nullable=False))
    to_org: str = Field(sa_column=Column(Text, nullable=False))
    to_service_id: str = Field(sa_column=Column(Text, nullable=False))
    service_category: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = _ts(default=True)


class Message(SQLModel, table=True):
    """A message an event owes an audience (the referrer, the receiving service, the person,
    their carers). Made once per (event, audience) by the consumer; who exactly receives it
    and in which form is worked out by the dispatcher at send time."""

    __tablename__ = "message"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    event_id: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    audience: str = Field(sa_column=Column(Text, nullable=False))
    template: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str | None = Field(default=None, sa_column=Column(Text))
    referral_id: str | None = Field(default=None, sa_column=Column(Text))
    org: str | None = Field(default=None, sa_column=Column(Text))
    # codes and ids from the event the template may use (never personal details)
    context: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    # pending | held (quiet hours) | sent | partly_sent | failed | skipped (nobody to tell,
    # e.g. no carer the person allows; last_error says why)
    status: str = Field(
        default="pending", sa_column=Column(Text, nullable=False, server_default="pending")
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = _ts(default=True)
    lease_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _ts(default=True)
    updated_at: datetime = _ts(default=True)


class MessageDelivery(SQLModel, table=True):
    """One attempt to reach one recipient on one channel: the delivery log."""

    __tablename__ = "message_delivery"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    message_id: str = Field(sa_column=Column(Text, nullable=False))
    recipient: str = Field(sa_column=Column(Text, nullable=False))  # user:U, org:O, person, carer:C
    channel: str = Field(sa_column=Column(Text, nullable=False))  # email | sms | in_app
    variant: str = Field(sa_column=Column(Text, nullable=False))  # plain | easy_read | large_print
    language: str = Field(sa_column=Column(Text, nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    # sent | failed (final on that channel; channel `none`: nothing could be tried) |
    # retrying (a transient failure, tried again later) | held (quiet hours)
    status: str = Field(sa_column=Column(Text, nullable=False))
    provider_ref: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    # e.g. a fallback: "no Polish (pl) template; sent in English"
    note: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = _ts(default=True)


class InboxItem(SQLModel, table=True):
    """A message in a user's (owner `user:<id>`) or a team's (`org:<code>`) in-app inbox."""

    __tablename__ = "inbox_item"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    owner: str = Field(sa_column=Column(Text, nullable=False))
    org: str = Field(sa_column=Column(Text, nullable=False))
    message_id: str | None = Field(default=None, sa_column=Column(Text))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    variant: str = Field(
        default="plain", sa_column=Column(Text, nullable=False, server_default="plain")
    )
    created_at: datetime = _ts(default=True)
    read_at: datetime | None = _ts(nullable=True)


class Preference(SQLModel, table=True):
    """A staff user's own notification choices."""

    __tablename__ = "preference"

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    org: str = Field(sa_column=Column(Text, nullable=False))
    channels: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    email: str | None = Field(default=None, sa_column=Column(Text))
    mobile: str | None = Field(default=None, sa_column=Column(Text))
    quiet_start: time | None = Field(default=None, sa_column=Column(Time))
    quiet_end: time | None = Field(default=None, sa_column=Column(Time))
    language: str = Field(default="en", sa_column=Column(Text, nullable=False, server_default="en"))
    variant: str = Field(
        default="plain", sa_column=Column(Text, nullable=False, server_default="plain")
    )
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    updated_at: datetime = _ts(default=True)


class WebhookSubscription(SQLModel, table=True):
    """A partner organisation's subscription to referral events."""

    __tablename__ = "webhook_subscription"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    org: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    event_types: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    filters: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    status: str = Field(
        default="active", sa_column=Column(Text, nullable=False, server_default="active")
    )
    # "whsec_" + base64 of the key bytes (the Standard Webhooks format)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    previous_secret: str | None = Field(default=None, sa_column=Column(Text))
    previous_secret_until: datetime | None = _ts(nullable=True)
    failing_since: datetime | None = _ts(nullable=True)
    disabled_at: datetime | None = _ts(nullable=True)
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str = Field(sa_column=Column(Text, nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    created_at: datetime = _ts(default=True)
    updated_at: datetime = _ts(default=True)
    deleted_at: datetime | None = _ts(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """One event owed to one subscription; its id is the `webhook-id` the partner sees."""

    __tablename__ = "webhook_delivery"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    subscription_id: str = Field(sa_column=Column(Text, nullable=False))
    event_id: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    event_time: datetime = _ts()
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(
        default="pending", sa_column=Column(Text, nullable=False, server_default="pending")
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # `attempts` when the delivery was last queued (0, or at a resend): the retry schedule
    # counts failures from here, so a resend gets the whole schedule again
    retry_from: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    next_attempt_at: datetime = _ts(default=True)
    lease_until: datetime | None = _ts(nullable=True)
    last_status_code: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _ts(default=True)
    delivered_at: datetime | None = _ts(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"

    delivery_id: str = Field(sa_column=Column(Text, primary_key=True))
    attempt: int = Field(sa_column=Column(Integer, primary_key=True))
    at: datetime = _ts(default=True)
    status_code: int | None = Field(default=None, sa_column=Column(Integer))
    error: str | None = Field(default=None, sa_column=Column(Text))
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))


class Alert(SQLModel, table=True):
    """A journey alert in the coordinators' inbox. The journey owns the alert; this row is
    its latest known state (highest `seq` from the journey's events) plus coordinators'
    actions applied at once so the inbox answers without waiting for the round trip.
    `version` (the ETag) moves only with a change a coordinator has not seen: the journey's
    echo of their own action leaves it (alerts.reconcile)."""

    __tablename__ = "alert"

    alert_id: str = Field(sa_column=Column(Text, primary_key=True))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    ics: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    rule: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    assignee: str | None = Field(default=None, sa_column=Column(Text))
    referral_ids: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    seq: int = Field(sa_column=Column(Integer, nullable=False))
    raised_at: datetime = _ts()
    updated_at: datetime = _ts()
    acknowledged_at: datetime | None = _ts(nullable=True)
    snoozed_until: datetime | None = _ts(nullable=True)
    resolved_at: datetime | None = _ts(nullable=True)
    resolution: str | None = Field(default=None, sa_column=Column(Text))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))


class AlertHistory(SQLModel, table=True):
    __tablename__ = "alert_history"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    alert_id: str = Field(sa_column=Column(Text, nullable=False))
    change: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    actor: str | None = Field(default=None, sa_column=Column(Text))
    assignee: str | None = Field(default=None, sa_column=Column(Text))
    detail: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = _ts(default=True)
    # the journey's change number that recorded it: a journey change's own; for a
    # coordinator's action, that of the journey's echo confirming it (null until it arrives)
    seq: int | None = Field(default=None, sa_column=Column(Integer))


class ReferralHistory(SQLModel, table=True):
    """Every referral state change the consumer has seen (one row per event; a flag, which
    changes no state, is not one): when referrals were submitted, triaged and first seen."""

    __tablename__ = "referral_history"

    event_id: str = Field(sa_column=Column(Text, primary_key=True))
    referral_id: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False))
    previous_state: str | None = Field(default=None, sa_column=Column(Text))
    service_category: str = Field(sa_column=Column(Text, nullable=False))
    from_org: str = Field(sa_column=Column(Text, nullable=False))
    to_org: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = _ts()  # the event's time


class DashboardSession(SQLModel, table=True):
    """A signed-in dashboard user (dashboard/session.py). Found by a hash of the cookie's
    random id; the user's API token is sealed with a key only that id gives. Deleting the row
    signs the user out everywhere that cookie is."""

    __tablename__ = "dashboard_session"

    id_hash: str = Field(sa_column=Column(Text, primary_key=True))
    user_identity: str = Field(sa_column=Column(Text, nullable=False))
    token_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(default=True)
    last_seen_at: datetime = _ts(default=True)
    expires_at: datetime = _ts()


class ContactIndex(SQLModel, table=True):
    """A contact with care the EHRs reported (`uk.waymark.encounter.recorded`), at the highest
    revision seen; cancelled and entered-in-error ones kept as such (encounters/)."""

    __tablename__ = "contact_index"

    encounter_id: str = Field(sa_column=Column(Text, primary_key=True))
    revision: int = Field(sa_column=Column(Integer, nullable=False))
    event_id: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    contact_kind: str = Field(sa_column=Column(Text, nullable=False))
    planned: bool = Field(sa_column=Column(Boolean, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    source_org: str = Field(sa_column=Column(Text, nullable=False))
    source_system: str = Field(sa_column=Column(Text, nullable=False))
    channel: str = Field(sa_column=Column(Text, nullable=False))
    chief_complaint: str | None = Field(default=None, sa_column=Column(Text))
    diagnosis_codes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    attendance_category: str | None = Field(default=None, sa_column=Column(Text))
    discharge_destination: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = _ts(default=True)


class PartnerClient(SQLModel, table=True):
    """A partner system's OAuth client, registered by its organisation's administrator
    (clients/). The provider holds the client; Waymark keeps what it needs to show, rotate and
    revoke it: never the client secret; the registration access token only sealed."""

    __tablename__ = "partner_client"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    client_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    org: str = Field(sa_column=Column(Text, nullable=False))
    ics: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))  # active | revoked
    registration: str = Field(sa_column=Column(Text, nullable=False))  # dynamic | manual
    registration_client_uri: str | None = Field(default=None, sa_column=Column(Text))
    registration_token_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    secret_version: int = Field(sa_column=Column(Integer, nullable=False))
    created_by: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(default=True)
    updated_at: datetime = _ts(default=True)
    secret_rotated_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)
