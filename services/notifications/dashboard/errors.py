"""Errors are pages: the dashboard app's own exception handlers. Every failure on a dashboard
address renders an HTML page with the right status (a problem+json for the script's
requests), never a stack trace; a missing or expired session sends the browser to sign in
through the identity provider.

The notifications API's handlers answer its own routes in problem+json; these, installed on
the dashboard's app (app.py), answer everything under /dashboard.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.notifications import service_apis
from services.notifications.dashboard import session
from services.notifications.dashboard.rendering import quiet_viewer, render, wants_json
from services.notifications.dashboard.session import LoginRequired
from shared.errors import WaymarkError
from shared.problems import problem

logger = logging.getLogger(__name__)

ERROR_TITLES = {
    400: "There is a problem with the request",
    401: "Sign in to continue",
    403: "You cannot do this",
    404: "Page not found",
    409: "This cannot be done now",
    412: "This has changed since you looked",
    413: "The form is too large",
    422: "Check what you entered",
    503: "Sorry, a service is not available",
}


def error_page(
    request: Request, status: int, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    title = ERROR_TITLES.get(status, "Sorry, there is a problem with the service")
    if wants_json(request):
        return problem(
            status,
            title,
            detail,
            slug=f"dashboard-{status}",
            instance=request.url.path,
            headers=headers,
        )
    v = quiet_viewer(request)
    referer, base = request.headers.get("referer", ""), str(request.base_url).rstrip("/")
    back = session.safe_next(referer[len(base) :]) if referer.startswith(base + "/") else None
    resp = render(
        request,
        "error.html",
        title=title,
        viewer=v,
        status=status,
        detail=detail,
        back=back,
        status_code=status,
    )
    for k, val in (headers or {}).items():
        resp.headers[k] = val
    return resp


def login_needed(request: Request, exc: LoginRequired) -> Response:
    """No session: off to sign in (through the identity provider), coming back to this page;
    a 401 problem for the script. A cookie naming a session that has ended (timed out, signed
    out elsewhere) asks the provider to authenticate the person again, so an idle timeout is not
    undone by the provider's own session."""
    if wants_json(request):
        return problem(
            401,
            "Not authenticated",
            exc.reason,
            slug="unauthenticated",
            instance=request.url.path,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    nxt = session.safe_next(target) if request.method == "GET" else None
    query = {"next": nxt} if nxt else {}
    if session.cookie_session_id(request) and not request.headers.get("authorization"):
        query["again"] = "1"
    return RedirectResponse(
        "/dashboard/login" + (f"?{urlencode(query)}" if query else ""),
        303,
        headers={"Cache-Control": "no-store"},
    )


class UnexpectedErrorPage:
    """A bug: logged with its trace; the page says nothing internal. An ASGI middleware rather
    than a handler for `Exception`, which Starlette hands to its outermost middleware, and that
    raises the error again after answering; here the page is the whole answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise  # too late for a page: the server ends the response
            request = Request(scope, receive)
            logger.exception(
                "dashboard: unhandled error on %s %s", request.method, request.url.path
            )
            page = error_page(
                request,
                500,
                "An unexpected error occurred; it has been logged. Try again, or go back.",
            )
            await page(scope, receive, send)


def install_error_pages(app: FastAPI) -> None:
    """The dashboard app's exception handlers: every error a page (or a problem for the
    script); no session, sign-in."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return login_needed(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        words = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in list(exc.errors())[:5]
        )
        return error_page(request, 422, f"Some values are not valid ({words}).")

    @app.exception_handler(service_apis.ApiError)
    async def _api(request: Request, exc: service_apis.ApiError) -> Response:
        # another service's API said no (its status, its words) or could not be reached
        status = exc.status if 400 <= exc.status < 600 else 502
        return error_page(request, status, exc.message)

    @app.exception_handler(WaymarkError)
    async def _waymark(request: Request, exc: WaymarkError) -> Response:
        return error_page(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # the router's own refusals too (a 405 keeps its Allow header)
        return error_page(
            request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None
        )

    app.add_middleware(UnexpectedErrorPage)
