"""Routes of the notifications API: partner organisations' webhook subscriptions and their
delivery log (routes only: parse, authorise, call a handler, render). Included by
services/notifications/api.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.notifications.models import WebhookSubscription
from services.notifications.webhooks import handlers
from services.notifications.webhooks.endpoints import Resolver
from services.notifications.webhooks.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryStatus,
    ResendOut,
    ResendRange,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
    SubscriptionWithSecret,
    UtcDatetime,
)
from shared.auth import CurrentPrincipal
from shared.web import (
    PROBLEM_RESPONSES,
    IdempotencyKey,
    Outcome,
    SessionDep,
    client_ip,
    expected_version,
    once_per_key,
    parse_etag,
    weak_etag,
)

router = APIRouter()
ERRORS = PROBLEM_RESPONSES

IfMatch = Annotated[str | None, Header(max_length=40)]
SubscriptionId = Annotated[str, Path(max_length=100)]
DeliveryId = Annotated[str, Path(max_length=100)]


def _resolver(request: Request) -> Resolver | None:
    # tests may stand a resolver in for DNS; otherwise the system resolver
    return getattr(request.app.state, "webhook_resolver", None)


def _out(sub: WebhookSubscription, *, with_secret: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        id=sub.id,
        org=sub.org,
        url=sub.url,
        description=sub.description,
        event_types=list(sub.event_types),
        filters=dict(sub.filters or {}),
        status=sub.status,
        failing_since=sub.failing_since,
        disabled_at=sub.disabled_at,
        disabled_reason=sub.disabled_reason,
        previous_secret_expires_at=sub.previous_secret_until if sub.previous_secret else None,
        created_by=sub.created_by,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
        version=sub.version,
    )
    if with_secret:
        return SubscriptionWithSecret(**fields, secret=sub.secret).model_dump(mode="json")
    return SubscriptionOut(**fields).model_dump(mode="json")


def _render(
    sub: WebhookSubscription, status: int = 200, *, with_secret: bool = False
) -> JSONResponse:
    return JSONResponse(
        _out(sub, with_secret=with_secret),
        status_code=status,
        headers={"ETag": weak_etag(sub.version)},
    )


def _delivery(row: Any) -> DeliveryOut:
    return DeliveryOut.model_validate(row, from_attributes=True)


# --- subscriptions --------------------------------------------------------------------------------


@router.post(
    "/webhook-subscriptions",
    status_code=201,
    response_model=SubscriptionWithSecret,
    responses=ERRORS,
)
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Subscribe your organisation's endpoint to referral events. The response is the only
    time the signing secret is shown."""
    handlers.check_may_manage(principal)

    async def create() -> Outcome:
        sub = await handlers.create_subscription(
            session=session,
            principal=principal,
            cmd=body,
            settings=request.app.state.settings,
            resolve=_resolver(request),
            client_ip=client_ip(request),
        )
        return Outcome(
            _out(sub, with_secret=True),
            201,
            {"Location": f"/webhook-subscriptions/{sub.id}", "ETag": weak_etag(sub.version)},
        )

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        ["create-webhook-subscription", body.model_dump(mode="json", exclude_unset=True)],
        create,
    )


@router.get("/webhook-subscriptions", response_model=list[SubscriptionOut], responses=ERRORS)
async def list_subscriptions(
    session: SessionDep, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    """Your organisation's subscriptions (oldest first)."""
    return [
        _out(s) for s in await handlers.list_subscriptions(session=session, principal=principal)
    ]


@router.get(
    "/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut, responses=ERRORS
)
async def get_subscription(
    subscription_id: SubscriptionId, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One subscription (ETag: its version)."""
    return _render(
        await handlers.get_subscription(
            session=session, principal=principal, subscription_id=subscription_id
        )
    )


@router.patch(
    "/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut, responses=ERRORS
)
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionUpdate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    """Change the URL, event types, filters or description. Needs If-Match with the ETag
    you read (412 if the subscription has changed since)."""
    handlers.check_may_manage(principal)
    expected = expected_version(if_match)
    sub = await handlers.update_subscription(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        cmd=body,
        expected_version=expected,
        settings=request.app.state.settings,
        resolve=_resolver(request),
        client_ip=client_ip(request),
    )
    return _render(sub)


@router.delete("/webhook-subscriptions/{subscription_id}", status_code=204, responses=ERRORS)
async def delete_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    """Stop and remove a subscription; what it was still owed is cancelled. If-Match is
    optional here."""
    handlers.check_may_manage(principal)
    expected = parse_etag(if_match) if if_match is not None else None
    await handlers.delete_subscription(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        expected_version=expected,
        client_ip=client_ip(request),
    )
    return Response(status_code=204)


@router.post(
    "/webhook-subscriptions/{subscription_id}/pause",
    response_model=SubscriptionOut,
    responses=ERRORS,
)
async def pause_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """Hold deliveries: events still queue, and go out on resume."""
    return _render(
        await handlers.pause_subscription(
            session=session,
            principal=principal,
            subscription_id=subscription_id,
            client_ip=client_ip(request),
        )
    )


@router.post(
    "/webhook-subscriptions/{subscription_id}/resume",
    response_model=SubscriptionOut,
    responses=ERRORS,
)
async def resume_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """Send again: a paused subscription, or one disabled after failing for too long."""
    return _render(
        await handlers.resume_subscription(
            session=session,
            principal=principal,
            subscription_id=subscription_id,
            client_ip=client_ip(request),
        )
    )


@router.post(
    "/webhook-subscriptions/{subscription_id}/rotate-secret",
    response_model=SubscriptionWithSecret,
    responses=ERRORS,
)
async def rotate_secret(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """A new signing secret (shown only now). The previous one keeps signing too, alongside
    the new, until `previous_secret_expires_at`."""
    return _render(
        await handlers.rotate_secret(
            session=session,
            principal=principal,
            subscription_id=subscription_id,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        ),
        with_secret=True,
    )


# --- deliveries -----------------------------------------------------------------------------------


@router.get(
    "/webhook-subscriptions/{subscription_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=ERRORS,
)
async def list_deliveries(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: DeliveryStatus | None = None,
    since: Annotated[UtcDatetime | None, Query(description="queued at or after")] = None,
    until: Annotated[UtcDatetime | None, Query(description="queued before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DeliveryOut]:
    """The delivery log, newest first."""
    rows = await handlers.list_deliveries(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        status=status,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        client_ip=client_ip(request),
    )
    return [_delivery(r) for r in rows]


@router.get(
    "/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses=ERRORS,
)
async def get_delivery(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeliveryDetail:
    """One delivery: what was sent, and every attempt with its answer."""
    row, payload, attempts = await handlers.get_delivery(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        delivery_id=delivery_id,
        client_ip=client_ip(request),
    )
    return DeliveryDetail(
        **_delivery(row).model_dump(),
        payload=payload,
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
    )


@router.post(
    "/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/resend",
    response_model=DeliveryOut,
    responses=ERRORS,
)
async def resend_delivery(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeliveryOut:
    """Send one delivery again now, with the same webhook-id (so you can deduplicate)."""
    row = await handlers.resend_delivery(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        delivery_id=delivery_id,
        client_ip=client_ip(request),
    )
    return _delivery(row)


@router.post(
    "/webhook-subscriptions/{subscription_id}/resend", response_model=ResendOut, responses=ERRORS
)
async def resend_range(
    subscription_id: SubscriptionId,
    body: ResendRange,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ResendOut:
    """Send again everything queued in a time range (e.g. while your endpoint was down),
    each with its original webhook-id."""
    count = await handlers.resend_range(
        session=session,
        principal=principal,
        subscription_id=subscription_id,
        cmd=body,
        client_ip=client_ip(request),
    )
    return ResendOut(resent=count)
