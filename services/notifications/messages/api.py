"""Routes of the notifications API: people's messages (included by
services/notifications/api.py; routes only: parse, authorise, call a handler, render).

- `/preferences/me`: a staff user's own channels, work contact, quiet hours, language, form;
- `/inbox`: the caller's own in-app items and their organisation's team items;
- `/messages`: the delivery log, to staff of an organisation the referral concerns, the
  coordinators and admins of this deployment's ICS; every read audited.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from services.notifications.messages import handlers
from services.notifications.messages.schemas import (
    InboxItemOut,
    InboxPage,
    MessageOut,
    PreferenceIn,
    PreferenceOut,
)
from shared.access import Capability
from shared.auth import CurrentPrincipal
from shared.web import PROBLEM_RESPONSES, SessionDep, client_ip, expected_version, weak_etag

router = APIRouter()
ERRORS = PROBLEM_RESPONSES


# --- preferences --------------------------------------------------------------------------------


@router.get("/preferences/me", response_model=PreferenceOut, responses=ERRORS)
async def get_my_preferences(session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Your own notification choices (the defaults, version 0, until you set them)."""
    out = await handlers.preferences(
        session, handlers.check_staff(principal, Capability.OWN_PREFERENCES)
    )
    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": weak_etag(out.version)})


@router.put("/preferences/me", response_model=PreferenceOut, responses=ERRORS)
async def put_my_preferences(
    body: PreferenceIn,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """Set your own channels (first choice first), work email and mobile, quiet hours,
    language and form. Needs If-Match with the version you read (W/"0" the first time)."""
    handlers.check_staff(principal, Capability.OWN_PREFERENCES)
    expected = expected_version(if_match)
    out = await handlers.set_preferences(session, principal, body, expected=expected)
    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": weak_etag(out.version)})


# --- the in-app inbox -----------------------------------------------------------------------------


@router.get("/inbox", response_model=InboxPage, responses=ERRORS)
async def inbox(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    unread: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> InboxPage:
    """Your in-app messages and your organisation's team messages, newest first."""
    handlers.check_staff(principal)
    return await handlers.inbox(
        session,
        principal,
        unread=unread,
        limit=limit,
        offset=offset,
        client_ip=client_ip(request),
    )


@router.post("/inbox/{item_id}/read", response_model=InboxItemOut, responses=ERRORS)
async def mark_read(
    item_id: Annotated[str, Path(max_length=80)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> InboxItemOut:
    """Mark one of your (or your team's) items read; reading it again changes nothing."""
    handlers.check_staff(principal)
    return await handlers.mark_read(session, principal, item_id, client_ip=client_ip(request))


# --- the delivery log ---------------------------------------------------------------------------


@router.get("/messages", response_model=list[MessageOut], responses=ERRORS)
async def list_messages(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    referral_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9-]+$")] = None,
    status: Annotated[
        list[Literal["pending", "held", "sent", "partly_sent", "failed", "skipped"]] | None, Query()
    ] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """The delivery log: messages owed (newest first) with every attempt; the referral's
    organisations see theirs, this ICS's coordinators and admins see all."""
    out, total = await handlers.list_messages(
        session,
        principal,
        request.app.state.settings,
        referral_id=referral_id,
        status=list(status) if status else None,
        since=since,
        limit=limit,
        offset=offset,
        client_ip=client_ip(request),
    )
    return JSONResponse(
        [m.model_dump(mode="json") for m in out], headers={"X-Total-Count": str(total)}
    )


@router.get("/messages/{message_id}", response_model=MessageOut, responses=ERRORS)
async def get_message(
    message_id: Annotated[str, Path(max_length=80)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> MessageOut:
    """One message with each attempt to reach each recipient."""
    return await handlers.get_message(
        session, principal, request.app.state.settings, message_id, client_ip=client_ip(request)
    )
