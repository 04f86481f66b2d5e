"""Routes of partner onboarding: an organisation's administrator registers its partner
systems' OAuth clients, sees them, rotates their secrets and revokes them (routes only: parse,
authorise, call a handler, render). Included by services/notifications/api.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from services.notifications.clients import handlers
from services.notifications.clients.domain import PARTNER_SCOPES
from services.notifications.clients.schemas import (
    ClientCreate,
    ClientOut,
    ClientWithSecret,
    ScopeOut,
)
from services.notifications.models import PartnerClient
from shared.auth import CurrentPrincipal
from shared.web import PROBLEM_RESPONSES, SessionDep, client_ip

router = APIRouter()
ERRORS = PROBLEM_RESPONSES
ClientKey = Annotated[str, Path(max_length=100)]
#: a secret is shown once: no cache may keep the answer
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def client_out(row: PartnerClient) -> dict[str, Any]:
    return ClientOut.model_validate(row, from_attributes=True).model_dump(mode="json")


def with_secret(found: handlers.WithSecret) -> dict[str, Any]:
    return ClientWithSecret(
        **ClientOut.model_validate(found.client, from_attributes=True).model_dump(),
        client_secret=found.secret,
        token_endpoint=found.token_endpoint,
    ).model_dump(mode="json")


@router.get("/partner-clients/scopes", response_model=list[ScopeOut], responses=ERRORS)
async def scopes(principal: CurrentPrincipal) -> list[ScopeOut]:
    """The scopes a partner's client may be given, and what each allows."""
    handlers.check_may_manage(principal)
    return [ScopeOut(scope=c.value, allows=words) for c, words in PARTNER_SCOPES.items()]


@router.post(
    "/partner-clients",
    status_code=201,
    response_model=ClientWithSecret | ClientOut,
    responses=ERRORS,
)
async def register(
    body: ClientCreate, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Register a partner system's client for your organisation at the identity provider. The
    answer is the only time its secret is shown. With `client_id`: record a client registered
    at a provider without dynamic registration (no secret here)."""
    out = await handlers.register_client(
        session=session,
        principal=principal,
        cmd=body,
        settings=request.app.state.settings,
        client_ip=client_ip(request),
    )
    if isinstance(out, handlers.WithSecret):
        return JSONResponse(with_secret(out), status_code=201, headers=NO_STORE)
    return JSONResponse(client_out(out), status_code=201)


@router.get("/partner-clients", response_model=list[ClientOut], responses=ERRORS)
async def list_clients(session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Your organisation's partner clients and their scopes, newest first (revoked included)."""
    rows = await handlers.list_clients(session=session, principal=principal)
    return JSONResponse([client_out(r) for r in rows], headers={"X-Total-Count": str(len(rows))})


@router.get("/partner-clients/{client_key}", response_model=ClientOut, responses=ERRORS)
async def get_client(
    client_key: ClientKey, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One of your organisation's partner clients (never its secret)."""
    row = await handlers.get_client(session=session, principal=principal, client_key=client_key)
    return JSONResponse(client_out(row))


@router.post(
    "/partner-clients/{client_key}/secret", response_model=ClientWithSecret, responses=ERRORS
)
async def rotate_secret(
    client_key: ClientKey, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A new secret for the client, shown only now; the old one stops working at once."""
    out = await handlers.rotate_secret(
        session=session,
        principal=principal,
        client_key=client_key,
        settings=request.app.state.settings,
        client_ip=client_ip(request),
    )
    return JSONResponse(with_secret(out), headers=NO_STORE)


@router.delete("/partner-clients/{client_key}", response_model=ClientOut, responses=ERRORS)
async def revoke(
    client_key: ClientKey, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Revoke the client: deleted at the identity provider, so it gets no more tokens (those
    it holds expire within minutes). The record stays, as revoked."""
    row = await handlers.revoke_client(
        session=session,
        principal=principal,
        client_key=client_key,
        settings=request.app.state.settings,
        client_ip=client_ip(request),
    )
    return JSONResponse(client_out(row))
