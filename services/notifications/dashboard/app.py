"""The coordinators' dashboard: an app of its own, mounted on the notifications API at
/dashboard (`mount_dashboard`, called by api.py).

Server-rendered Jinja2 pages (autoescape on), one module per area under pages/; a small
script enhances them (the live alert list over Server-Sent Events, actions without a reload).
Every page works without the script.

- Its own exception handlers (errors.py): every failure is a page with the right status (a
  problem+json for the script's requests), never a stack trace; no session means signing in.
  The notifications API's own routes keep answering problem+json.
- Mounted, not a process of its own: it shares the API's state (settings, database sessions)
  and lifespan, and sits inside the API's middleware (tracing, control characters, the write
  rate limit, the body limit). Its session cookie (path=/) also opens the API's live alert
  stream, /alerts/stream, so the browser's EventSource needs no token in its address.
- The alert inbox is the notifications service's own data, read in-process and audited as
  the alert API audits it; everything else is another service's, read through its API with
  the user's own token (clients.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from starlette.routing import Match, Mount
from starlette.types import Scope

from services.notifications import service_apis
from services.notifications.config import contact_figures
from services.notifications.dashboard import session
from services.notifications.dashboard.errors import install_error_pages
from services.notifications.dashboard.pages import (
    alerts,
    clients,
    directory,
    overview,
    referrals,
    signin,
)
from services.notifications.dashboard.rendering import HERE
from shared.errors import NotFound

PREFIX = "/dashboard"

STATIC_TYPES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


async def static(name: str, request: Request) -> Response:
    """The stylesheet and the script (nothing else is served from here)."""
    if name not in STATIC_TYPES:
        raise NotFound(f"no file {name}")
    body = (HERE / "static" / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=STATIC_TYPES[name], headers=headers)


async def not_found(rest: str, request: Request) -> Response:
    """Any other dashboard address: a page saying so."""
    if rest == "":
        return await signin.home(request)
    raise NotFound(
        "There is no page at this address. Check it, or start from the dashboard's home page."
    )


def create_dashboard_app() -> FastAPI:
    """The dashboard's app: its pages (paths relative to where it is mounted) and its error
    pages. Every page looks the session cookie up first (session.load_session), so a page's
    `viewer` is a lookup."""
    app = FastAPI(
        title="Waymark dashboard",
        openapi_url=None,  # pages, not an API: nothing to describe
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(session.load_session)],
    )
    install_error_pages(app)
    # the order is the order routes are tried in: the catch-all comes last
    app.add_api_route("", signin.home, methods=["GET"])  # /dashboard itself
    app.include_router(signin.router)
    app.add_api_route("/static/{name}", static, methods=["GET"])
    app.include_router(alerts.router)
    app.include_router(referrals.router)
    app.include_router(directory.router)
    app.include_router(overview.router)
    app.include_router(clients.router)
    app.add_api_route("/{rest:path}", not_found, methods=["GET", "POST"])
    return app


class _Mount(Mount):
    """A mount that also answers its own address: Starlette's matches only below it (it
    would redirect /dashboard to /dashboard/), and /dashboard is where each user starts."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE and scope["type"] == "http":
            root_path = scope.get("root_path", "")
            path: str = scope["path"]
            if path.startswith(root_path) and path[len(root_path) :] == self.path:
                child = {
                    "path_params": dict(scope.get("path_params", {})),
                    "app_root_path": scope.get("app_root_path", root_path),
                    "root_path": root_path + self.path,
                    "endpoint": self.app,
                }
                return Match.FULL, child
        return match, child


def mount_dashboard(host: FastAPI, path: str = PREFIX) -> FastAPI:
    """Mount the dashboard on `host` (the notifications API) at `path`. The dashboard shares
    the host's state, so it uses the engine and settings the host's lifespan makes; its HTTP
    client for the other APIs is closed when that lifespan ends."""
    dashboard = create_dashboard_app()
    dashboard.state = host.state
    host.router.routes.append(_Mount(path, app=dashboard, name="dashboard"))
    host_lifespan = host.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with host_lifespan(app) as state:
            # the overview's contact figures' settings, checked now (fail fast, not per page)
            app.state.contact_figures = contact_figures()
            try:
                yield state
            finally:
                await service_apis.close_http(app)

    host.router.lifespan_context = lifespan
    return dashboard
