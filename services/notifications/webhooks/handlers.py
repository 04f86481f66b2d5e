"""Use cases of the partner webhook API: one per command, in the caller's transaction (the
request's session commits when the route returns). Every change is audited with it.

A partner sees and manages only its own organisation's subscriptions: another
organisation's subscription is "not found", never "forbidden", so its existence is not
revealed.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import audience
from services.notifications.models import WebhookSubscription
from services.notifications.webhooks import domain, repository
from services.notifications.webhooks.endpoints import Resolver, guard_endpoint
from services.notifications.webhooks.schemas import (
    Filters,
    ResendRange,
    SubscriptionCreate,
    SubscriptionUpdate,
)
from shared.access import Capability, check_scope, may_use, roles_phrase
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.events.registry import load_all
from shared.settings import Settings

MAX_SUBSCRIPTIONS_PER_ORG = 100
_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
SUBSCRIPTION = "WebhookSubscription"
DELIVERY = "WebhookDelivery"


def _now() -> datetime:
    return datetime.now(UTC)


def known_event_types() -> set[str]:
    return {m.EVENT_TYPE for m in load_all().all_models()}


def check_may_manage(principal: Principal) -> None:
    if not may_use(principal, Capability.WEBHOOKS_MANAGE):
        raise Forbidden(
            f"webhook subscriptions are managed by an organisation's own "
            f"{roles_phrase(Capability.WEBHOOKS_MANAGE)}"
        )


def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    resource_id: str,
    *,
    client_ip: str | None,
    detail: str | None = None,
    resource_type: str = SUBSCRIPTION,
) -> None:
    record_audit(
        session,
        principal=principal,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        client_ip=client_ip,
        detail=detail,
    )


async def _checked(
    principal: Principal,
    cmd_types: list[str] | None,
    cmd_filters: Filters | None,
    url: str | None,
    settings: Settings,
    resolve: Resolver | None,
) -> tuple[list[str] | None, dict[str, Any] | None]:
    types = (
        None
        if cmd_types is None
        else domain.check_event_types(
            cmd_types,
            known=known_event_types(),
            prefix=audience.SUBSCRIBABLE_PREFIX,
            also=audience.SUBSCRIBABLE_ALERT_TYPES,
        )
    )
    # a client's subscription follows its scopes: the events it may subscribe to are those
    # whose capability its token names (a person's token has no scopes to follow)
    for t in types or ():
        check_scope(principal, domain.event_capability(t))
    filters = (
        None
        if cmd_filters is None
        else domain.check_filters(cmd_filters.model_dump(exclude_none=True))
    )
    if url is not None:
        await guard_endpoint(url, mode=settings.deployment_mode, resolve=resolve)
    return types, filters


# --- subscriptions ------------------------------------------------------------------------------


async def create_subscription(
    *,
    session: AsyncSession,
    principal: Principal,
    cmd: SubscriptionCreate,
    settings: Settings,
    resolve: Resolver | None = None,
    client_ip: str | None = None,
) -> WebhookSubscription:
    check_may_manage(principal)
    types, filters = await _checked(
        principal, cmd.event_types, cmd.filters, cmd.url, settings, resolve
    )
    count = await repository.count_subscriptions(session, principal.org)
    if count >= MAX_SUBSCRIPTIONS_PER_ORG:
        raise Conflict(
            f"an organisation may have at most {MAX_SUBSCRIPTIONS_PER_ORG} "
            "webhook subscriptions; delete one first"
        )
    now = _now()
    sub = WebhookSubscription(
        id=f"whs_{uuid.uuid4().hex}",
        org=principal.org,
        url=cmd.url,
        description=cmd.description,
        event_types=types or [],
        filters=filters or {},
        status="active",
        secret=domain.new_secret(),
        created_by=principal.identity,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    _audit(
        session,
        principal,
        "create",
        sub.id,
        client_ip=client_ip,
        detail=f"events {','.join(sub.event_types)}",
    )
    await session.flush()
    return sub


async def list_subscriptions(
    *, session: AsyncSession, principal: Principal
) -> list[WebhookSubscription]:
    check_may_manage(principal)
    return await repository.list_subscriptions(session, principal.org)


async def get_subscription(
    *, session: AsyncSession, principal: Principal, subscription_id: str, for_update: bool = False
) -> WebhookSubscription:
    check_may_manage(principal)
    if not _ID.fullmatch(subscription_id):
        raise NotFound(f"no webhook subscription {subscription_id[:80]}")
    sub = await repository.get_subscription(session, subscription_id, for_update=for_update)
    if sub is None or sub.org != principal.org or sub.deleted_at is not None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return sub


def _check_version(sub: WebhookSubscription, expected: int | None) -> None:
    if expected is not None and sub.version != expected:
        raise PreconditionFailed(
            f"the subscription is at version {sub.version}, not {expected}; read it again",
            current_version=sub.version,
        )


def _touch(sub: WebhookSubscription, now: datetime) -> None:
    sub.version += 1
    sub.updated_at = now


async def update_subscription(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    cmd: SubscriptionUpdate,
    expected_version: int,
    settings: Settings,
    resolve: Resolver | None = None,
    client_ip: str | None = None,
) -> WebhookSubscription:
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id, for_update=True
    )
    _check_version(sub, expected_version)
    given = cmd.model_fields_set
    if "url" in given and cmd.url is None or "event_types" in given and cmd.event_types is None:
        raise ValidationFailed("url and event_types cannot be removed, only changed")
    types, filters = await _checked(
        principal, cmd.event_types, cmd.filters, cmd.url, settings, resolve
    )
    changed = []
    if cmd.url is not None and cmd.url != sub.url:
        sub.url = cmd.url
        changed.append("url")
    if types is not None and types != list(sub.event_types):
        sub.event_types = types
        changed.append("event_types")
    if "filters" in given and (filters or {}) != sub.filters:
        sub.filters = filters or {}
        changed.append("filters")
    if "description" in given and cmd.description != sub.description:
        sub.description = cmd.description
        changed.append("description")
    if changed:
        _touch(sub, _now())
        session.add(sub)
        _audit(session, principal, "update", sub.id, client_ip=client_ip, detail=",".join(changed))
        await session.flush()
    return sub


async def delete_subscription(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    expected_version: int | None,
    client_ip: str | None = None,
) -> None:
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id, for_update=True
    )
    _check_version(sub, expected_version)
    now = _now()
    sub.deleted_at = now
    _touch(sub, now)
    session.add(sub)
    await session.flush()
    # what was still owed is not sent any more (and leaves the dispatcher's due index)
    cancelled = await repository.cancel_pending(session, sub.id)
    _audit(
        session,
        principal,
        "delete",
        sub.id,
        client_ip=client_ip,
        detail=f"{cancelled} pending deliveries cancelled",
    )


async def pause_subscription(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    client_ip: str | None = None,
) -> WebhookSubscription:
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id, for_update=True
    )
    if sub.status == "disabled":
        raise Conflict("the subscription is disabled; resume it to start sending again")
    if sub.status == "active":
        sub.status = "paused"
        _touch(sub, _now())
        session.add(sub)
        _audit(session, principal, "pause", sub.id, client_ip=client_ip)
        await session.flush()
    return sub


async def resume_subscription(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    client_ip: str | None = None,
) -> WebhookSubscription:
    """Start sending again (a paused or a disabled subscription): what is owed and due goes
    at once, and the failure clock starts afresh."""
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id, for_update=True
    )
    if sub.status != "active":
        was = sub.status
        sub.status = "active"
        sub.failing_since = None
        sub.disabled_at = None
        sub.disabled_reason = None
        _touch(sub, _now())
        session.add(sub)
        _audit(session, principal, "resume", sub.id, client_ip=client_ip, detail=f"was {was}")
        await session.flush()
    return sub


async def rotate_secret(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    settings: Settings,
    client_ip: str | None = None,
) -> WebhookSubscription:
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id, for_update=True
    )
    now = _now()
    sub.secret, sub.previous_secret, sub.previous_secret_until = domain.rotation(
        current=sub.secret, now=now, grace_seconds=settings.webhook_secret_grace_seconds
    )
    _touch(sub, now)
    session.add(sub)
    _audit(
        session,
        principal,
        "rotate-secret",
        sub.id,
        client_ip=client_ip,
        detail=f"previous secret valid until {sub.previous_secret_until.isoformat()}",
    )
    await session.flush()
    return sub


# --- deliveries -----------------------------------------------------------------------------------


async def list_deliveries(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    client_ip: str | None = None,
) -> list[Any]:
    """Newest first; `since`/`until` bound when the delivery was queued."""
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id
    )
    if since is not None and until is not None and since > until:
        raise ValidationFailed("since must not be after until")
    rows = await repository.list_deliveries(
        session, sub.id, status=status, since=since, until=until, limit=limit, offset=offset
    )
    _audit(
        session,
        principal,
        "read",
        sub.id,
        client_ip=client_ip,
        resource_type=DELIVERY,
        detail=f"list of {len(rows)} deliveries",
    )
    return rows


async def get_delivery(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    delivery_id: str,
    client_ip: str | None = None,
) -> tuple[Any, dict[str, Any], list[Any]]:
    """A delivery, its payload and its attempts (oldest first)."""
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id
    )
    if not _ID.fullmatch(delivery_id):
        raise NotFound(f"no delivery {delivery_id[:80]}")
    row = await repository.get_delivery(session, sub.id, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of subscription {sub.id}")
    attempts = await repository.attempts(session, delivery_id)
    _audit(
        session,
        principal,
        "read",
        delivery_id,
        client_ip=client_ip,
        resource_type=DELIVERY,
        detail=f"subscription {sub.id}",
    )
    payload = row.payload if isinstance(row.payload, dict) else {}
    return row, payload, attempts


async def resend_delivery(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    delivery_id: str,
    client_ip: str | None = None,
) -> Any:
    """Send one delivery again, now, with the same webhook-id; it gets the whole retry
    schedule again."""
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id
    )
    if not _ID.fullmatch(delivery_id):
        raise NotFound(f"no delivery {delivery_id[:80]}")
    row = await repository.lock_delivery(session, sub.id, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of subscription {sub.id}")
    if row.status == "pending" and row.in_flight:
        raise Conflict("this delivery is being sent right now; look again in a moment")
    updated = await repository.requeue_delivery(session, delivery_id)
    _audit(
        session,
        principal,
        "resend",
        delivery_id,
        client_ip=client_ip,
        resource_type=DELIVERY,
        detail=f"subscription {sub.id}, was {row.status}",
    )
    return updated


async def resend_range(
    *,
    session: AsyncSession,
    principal: Principal,
    subscription_id: str,
    cmd: ResendRange,
    client_ip: str | None = None,
) -> int:
    """Send again every delivery queued in [since, until) (only the failed ones if asked),
    now, each with its own webhook-id; deliveries being sent right now are left alone."""
    sub = await get_subscription(
        session=session, principal=principal, subscription_id=subscription_id
    )
    until = cmd.until or _now()
    if cmd.since > until:
        raise ValidationFailed("since must not be after until")
    statuses = ["failed"] if cmd.only_failed else ["pending", "delivered", "failed"]
    count = await repository.requeue_range(
        session, sub.id, since=cmd.since, until=until, statuses=statuses
    )
    _audit(
        session,
        principal,
        "resend",
        sub.id,
        client_ip=client_ip,
        resource_type=DELIVERY,
        detail=f"{count} deliveries queued {cmd.since.isoformat()} to {until.isoformat()}",
    )
    return int(count)
