"""Routes of the notifications API: the coordinators' alert inbox and its live stream
(included by services/notifications/api.py).

Coordinators and admins of the ICS this deployment serves read the inbox; coordinators act on
alerts (acknowledge, assign, snooze, resolve). Each action changes the row at once and is
published (AlertActionTaken) so the patient's PatientJourney hears it; the journey's own
alert event then reconciles the row. Every read of an alert is audited.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.notifications.alerts import crisis_plans, domain, handlers, live
from services.notifications.alerts.crisis_plans import AlertWithCrisisPlan
from services.notifications.alerts.domain import Action, AlertFilter, Kind, Severity, Sort, Status
from services.notifications.alerts.explainer import explainer_for
from services.notifications.alerts.schemas import (
    AlertCounts,
    AlertOut,
    AlertPage,
    AssignIn,
    ResolveIn,
    SnoozeIn,
    alert_out,
)
from services.notifications.dashboard import session as dashboard_session
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal, current_principal, verify_token
from shared.db import unit_of_work
from shared.errors import NotFound, Unauthenticated
from shared.settings import get_settings
from shared.web import (
    PROBLEM_RESPONSES,
    IdempotencyKey,
    Outcome,
    QueryDateTime,
    SessionDep,
    client_ip,
    once_per_key,
    weak_etag,
)

logger = logging.getLogger(__name__)

#: how long a browser waits before reconnecting a dropped stream (the SSE `retry` field)
RECONNECT_MS = 3000


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # runs inside the app's own lifespan (the engine exists); the fan-out and the Temporal
    # client are made on first use, so an API nobody streams from opens no extra connection
    try:
        yield
    finally:
        fanout: live.AlertFanout | None = getattr(app.state, "alert_fanout", None)
        if fanout is not None:
            await fanout.close()


router = APIRouter(lifespan=_lifespan)
ERRORS = PROBLEM_RESPONSES
IfMatch = Annotated[
    str | None, Header(max_length=40, description='the ETag you read, e.g. W/"3" (optional)')
]


def _fanout(request: Request) -> live.AlertFanout:
    state = request.app.state
    if getattr(state, "alert_fanout", None) is None:
        state.alert_fanout = live.AlertFanout(state.settings, state.sessions)
    fanout: live.AlertFanout = state.alert_fanout
    return fanout


_explainer = explainer_for


def _filters(
    request: Request,
    principal: CurrentPrincipal,
    kind: Annotated[list[Kind] | None, Query()] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    status: Annotated[
        list[Status] | None, Query(description="default: every status but resolved")
    ] = None,
    assignee: Annotated[
        str | None, Query(max_length=300, description="a user id, `me` or `unassigned`")
    ] = None,
    org: Annotated[
        str | None,
        Query(
            max_length=20,
            description="alerts whose referrals concern this organisation (referrer or receiver)",
        ),
    ] = None,
    patient_id: Annotated[str | None, Query(max_length=80)] = None,
    raised_after: Annotated[QueryDateTime | None, Query()] = None,
    raised_before: Annotated[QueryDateTime | None, Query()] = None,
    min_age_days: Annotated[
        int | None,
        Query(ge=0, le=domain.MAX_AGE_DAYS, description="raised at least this many days ago"),
    ] = None,
) -> AlertFilter:
    ics = request.app.state.settings.ics
    domain.check_may_read(principal, ics)
    return domain.build_filter(
        ics=ics,
        actor=principal.identity,
        now=datetime.now(UTC),
        kind=kind,
        severity=severity,
        status=status,
        assignee=assignee,
        org=org,
        patient_id=patient_id,
        raised_after=raised_after,
        raised_before=raised_before,
        min_age_days=min_age_days,
    )


Filters = Annotated[AlertFilter, Depends(_filters)]


# --- reading ----------------------------------------------------------------------------------


@router.get("/alerts", response_model=AlertPage, responses=ERRORS)
async def list_alerts(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    f: Filters,
    sort: Sort = Sort.AGE,
    limit: Annotated[int, Query(ge=1, le=domain.MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=domain.MAX_OFFSET)] = 0,
) -> AlertPage:
    """The ICS's inbox: filter by kind, severity, status, assignee, organisation, age; sort by
    age (oldest first) or severity (urgent first, then oldest)."""
    rows, total = await handlers.list_alerts(session, f, sort=sort, limit=limit, offset=offset)
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="Alert",
            resource_id=r.alert_id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="list",
        )
    return AlertPage(items=[alert_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/alerts/counts", response_model=AlertCounts, responses=ERRORS)
async def count_alerts(
    request: Request, session: SessionDep, principal: CurrentPrincipal, f: Filters
) -> AlertCounts:
    """How many alerts, by kind, severity and status (the list's filters apply)."""
    counts = await handlers.count_alerts(session, f)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="AlertCounts",
        client_ip=client_ip(request),
        detail="counts",
    )
    return AlertCounts.model_validate(counts)


async def _stream_principal(
    request: Request,
    access_token: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="the bearer token, for browsers' EventSource (which "
            "cannot send headers); accepted on this route only",
        ),
    ] = None,
) -> Principal:
    # the token in a URL is accepted here only, and never logged (the API runs without an
    # access log; telemetry records the path alone)
    if request.headers.get("authorization"):
        return await current_principal(request)
    if not access_token and dashboard_session.cookie_session_id(request):
        # the dashboard's pages: a browser's EventSource sends the dashboard's session cookie
        found = await dashboard_session.stream_session(request)
        if found is None:
            raise Unauthenticated(dashboard_session.SESSION_ENDED)
        request.state.dashboard_session_id, access_token = found
    if not access_token:
        raise Unauthenticated(
            "send an access token: Authorization: Bearer <token>, or "
            "?access_token=<token> on this route"
        )
    principal = await verify_token(get_settings(), access_token)
    request.state.principal = principal
    return principal


async def _subscription(
    request: Request, principal: Annotated[Principal, Depends(_stream_principal)]
) -> AsyncIterator[tuple[Principal, live.Subscription]]:
    s = request.app.state.settings
    domain.check_may_read(principal, s.ics)
    fanout = _fanout(request)
    sub = await fanout.subscribe(
        principal.ics,
        owner=principal.identity,
        max_per_user=s.alert_stream_max_per_user,
        max_total=s.alert_stream_max_total,
    )
    try:
        yield principal, sub
    finally:
        fanout.unsubscribe(sub)


@router.get(
    "/alerts/stream",
    response_class=EventSourceResponse,
    responses={
        **ERRORS,
        503: {
            "description": "the stream cannot listen for changes right now",
            "content": {"application/problem+json": {}},
        },
        429: {
            "description": "you, or this server, have as many streams open as allowed "
            "(Retry-After says when to try again)",
            "content": {"application/problem+json": {}},
        },
        200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}},
    },
)
async def stream_alerts(
    request: Request,
    subscription: Annotated[tuple[Principal, live.Subscription], Depends(_subscription)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: new and changed alerts of your ICS, as they happen.

    Events: `ready` once listening (load GET /alerts now; every change after it arrives
    here); `alert` for each new or changed alert (`id: <alert_id>:<version>`, data: the alert
    as the list shows it); `resync` when changes may have been missed (load the list again).
    Comment lines (`: heartbeat`) keep idle connections open. A client that falls far behind
    is disconnected; EventSource reconnects by itself. A user may hold a few streams at once
    (`alert_stream_max_per_user`), a server a bounded number (`alert_stream_max_total`):
    beyond either, 429 with Retry-After.

    Authenticate with `Authorization: Bearer <token>`; browsers' EventSource cannot send
    headers, so this route alone also accepts `?access_token=<token>` (use a short-lived
    token: URLs end up in browser history and proxy logs) and the dashboard's session
    cookie (a page of /dashboard needs neither; the stream ends when that session does)."""
    principal, sub = subscription
    sessions = request.app.state.sessions
    heartbeat = request.app.state.settings.alert_stream_heartbeat_seconds
    # a stream the dashboard's cookie opened lasts as long as its session (checked on each
    # heartbeat, without counting as activity)
    session_id: str | None = getattr(request.state, "dashboard_session_id", None)
    ip = client_ip(request)
    try:
        yield ServerSentEvent(event="ready", data={"ics": sub.ics}, retry=RECONNECT_MS)
        while True:
            item = await sub.next(heartbeat)
            if item is None:
                if session_id is not None and not await dashboard_session.session_alive(
                    request, session_id
                ):
                    return  # signed out or timed out: the page's stream ends with it
                yield ServerSentEvent(comment="heartbeat")
            elif item is live.DROPPED:
                return
            elif item is live.RESYNC:
                yield ServerSentEvent(
                    event="resync", data={"reason": "changes may have been missed; reload"}
                )
            elif isinstance(item, live.AlertChanged):
                alert = item.alert
                # what a dashboard is shown is a read of the patient's alert: audited
                async with unit_of_work(sessions) as session:
                    record_audit(
                        session,
                        principal=principal,
                        action="read",
                        resource_type="Alert",
                        resource_id=alert["alert_id"],
                        patient_id=alert["patient_id"],
                        client_ip=ip,
                        detail=f"stream v{alert['version']}",
                    )
                yield ServerSentEvent(
                    id=f"{alert['alert_id']}:{alert['version']}", event="alert", data=alert
                )
    finally:
        _fanout(request).unsubscribe(sub)


@router.get("/alerts/{alert_id}", response_model=AlertWithCrisisPlan, responses=ERRORS)
async def get_alert(
    alert_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One alert: its row, its history, and the journey's plain-English explanation and
    evidence (null, with `explanation_unavailable` saying why, if the journey can't be
    asked); a PHQ-9 item 9 alert also the person's crisis plan, read from their care plan
    with your sign-in (null, with `crisis_plan_unavailable` saying why, if it can't be)."""
    settings = request.app.state.settings
    domain.check_may_read(principal, settings.ics)
    row = await handlers.get_alert(session, alert_id)
    if row is None or row.ics != settings.ics:
        raise NotFound(f"no alert {alert_id}")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Alert",
        resource_id=row.alert_id,
        patient_id=row.patient_id,
        client_ip=client_ip(request),
        detail="detail",
    )
    hist = await handlers.history(session, alert_id)
    why = await _explainer(request).explain(patient_id=row.patient_id, alert_id=alert_id)
    crisis, crisis_why = await crisis_plans.for_alert(
        request, rule=row.rule, patient_id=row.patient_id
    )
    detail = AlertWithCrisisPlan(
        **alert_out(row).model_dump(),
        history=hist,
        explanation=why.explanation,
        evidence=why.evidence,
        explanation_unavailable=why.unavailable,
        crisis_plan=crisis,
        crisis_plan_unavailable=crisis_why,
    )
    return JSONResponse(detail.model_dump(mode="json"), headers={"ETag": weak_etag(row.version)})


# --- acting -----------------------------------------------------------------------------------


async def _act(
    request: Request,
    session: SessionDep,
    principal: Principal,
    alert_id: str,
    action: Action,
    body: dict[str, Any],
    if_match: str | None,
    idempotency_key: str | None,
    **args: Any,
) -> Response:
    domain.check_may_read(principal, request.app.state.settings.ics)

    async def act() -> Outcome:
        row = await handlers.take_action(
            session=session,
            principal=principal,
            settings=request.app.state.settings,
            alert_id=alert_id,
            action=action,
            if_match=if_match,
            client_ip=client_ip(request),
            **args,
        )
        return Outcome(
            alert_out(row).model_dump(mode="json"),
            200,
            {"ETag": weak_etag(row.version)},
        )

    return await once_per_key(
        session, principal, idempotency_key, [action.value, alert_id, body], act
    )


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut, responses=ERRORS)
async def acknowledge(
    alert_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """I have seen it and am dealing with it (open, escalated or snoozed alerts). Assigns it
    to you if nobody has it."""
    return await _act(
        request, session, principal, alert_id, Action.ACKNOWLEDGE, {}, if_match, idempotency_key
    )


@router.post("/alerts/{alert_id}/assign", response_model=AlertOut, responses=ERRORS)
async def assign(
    alert_id: str,
    body: AssignIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Give it to someone (a user id, or `me`)."""
    return await _act(
        request,
        session,
        principal,
        alert_id,
        Action.ASSIGN,
        body.model_dump(mode="json"),
        if_match,
        idempotency_key,
        assignee=body.assignee,
    )


@router.post("/alerts/{alert_id}/snooze", response_model=AlertOut, responses=ERRORS)
async def snooze(
    alert_id: str,
    body: SnoozeIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Not now: the journey reopens it at `until` (future, at most 30 days)."""
    return await _act(
        request,
        session,
        principal,
        alert_id,
        Action.SNOOZE,
        body.model_dump(mode="json"),
        if_match,
        idempotency_key,
        until=body.until,
    )


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut, responses=ERRORS)
async def resolve(
    alert_id: str,
    body: ResolveIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Close it, with a coded reason (e.g. contacted-person)."""
    return await _act(
        request,
        session,
        principal,
        alert_id,
        Action.RESOLVE,
        body.model_dump(mode="json"),
        if_match,
        idempotency_key,
        resolution=body.resolution,
    )
