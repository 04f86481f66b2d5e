"""Partner clients: an organisation's administrator registers its partner systems' OAuth
clients, sees them and their scopes, rotates a secret and revokes a client. The same handlers
as the onboarding API (clients/handlers.py), in-process and audited there. A new secret is
shown once, on the page that answers the form (no redirect: it is never in an address, a
cookie or a cache, and the page is `Cache-Control: no-store`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from services.notifications.clients import handlers
from services.notifications.clients.domain import PARTNER_SCOPES
from services.notifications.clients.schemas import ClientCreate
from services.notifications.dashboard import session
from services.notifications.dashboard.rendering import redirect, render, settings_of
from services.notifications.dashboard.session import Viewer, ViewerDep
from shared.db import unit_of_work
from shared.errors import ValidationFailed
from shared.web import client_ip

router = APIRouter()

ClientKey = Annotated[str, Path(max_length=100)]
SCOPE_FIELD = "scope:"
SCOPE_CHOICES = [(c.value, words) for c, words in PARTNER_SCOPES.items()]


async def _page(
    request: Request,
    v: Viewer,
    *,
    status: int = 200,
    shown_secret: dict[str, Any] | None = None,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    async with unit_of_work(request.app.state.sessions) as db:
        rows = await handlers.list_clients(session=db, principal=v.principal)
    return render(
        request,
        "clients.html",
        title="Partner clients",
        viewer=v,
        status=status,
        clients=rows,
        scope_choices=SCOPE_CHOICES,
        shown_secret=shown_secret,
        error=error,
        form=form or {"name": "", "scopes": []},
        notice=notice,
    )


@router.get("/partner-clients")
async def clients_page(request: Request, v: ViewerDep) -> Response:
    """Your organisation's partner clients, and a form to register one."""
    handlers.check_may_manage(v.principal)
    return await _page(request, v)


@router.post("/partner-clients")
async def register(request: Request, v: ViewerDep) -> Response:
    """Register a partner client; the page that answers shows its secret, once."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    handlers.check_may_manage(v.principal)
    # one checkbox per scope, each a field of its own (the form reader keeps one value a name)
    scopes = sorted(k.removeprefix(SCOPE_FIELD) for k in form if k.startswith(SCOPE_FIELD))[:20]
    name = form.get("name", "")[:200]
    kept = {"name": name, "scopes": scopes}
    if not name.strip() or not scopes:
        return await _page(
            request,
            v,
            status=422,
            error="Give the client a name and at least one thing it may do.",
            form=kept,
        )
    try:
        async with unit_of_work(request.app.state.sessions) as db:
            out = await handlers.register_client(
                session=db,
                principal=v.principal,
                cmd=ClientCreate(name=name[:80], scopes=scopes),
                settings=settings_of(request),
                client_ip=client_ip(request),
            )
    except ValidationFailed as exc:
        return await _page(request, v, status=422, error=exc.message, form=kept)
    assert isinstance(out, handlers.WithSecret)
    return await _page(request, v, status=201, shown_secret=_shown(out, "registered"))


@router.post("/partner-clients/{client_key}/rotate")
async def rotate(client_key: ClientKey, request: Request, v: ViewerDep) -> Response:
    """A new secret for the client, shown once on the page that answers."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    async with unit_of_work(request.app.state.sessions) as db:
        out = await handlers.rotate_secret(
            session=db,
            principal=v.principal,
            client_key=client_key,
            settings=settings_of(request),
            client_ip=client_ip(request),
        )
    return await _page(request, v, shown_secret=_shown(out, "given a new secret"))


@router.post("/partner-clients/{client_key}/revoke")
async def revoke(client_key: ClientKey, request: Request, v: ViewerDep) -> Response:
    """Revoke the client: it gets no more tokens."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    async with unit_of_work(request.app.state.sessions) as db:
        await handlers.revoke_client(
            session=db,
            principal=v.principal,
            client_key=client_key,
            settings=settings_of(request),
            client_ip=client_ip(request),
        )
    return redirect("/dashboard/partner-clients")


def _shown(out: handlers.WithSecret, what: str) -> dict[str, Any]:
    return {
        "what": what,
        "name": out.client.name,
        "client_id": out.client.client_id,
        "secret": out.secret,
        "token_endpoint": out.token_endpoint,
        "scopes": " ".join(out.client.scopes),
    }
