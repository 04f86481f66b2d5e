"""What every service's FastAPI app shares: the app factory (errors, tracing, health, input
limits, API docs), the transactional session dependency, and idempotency keys for POSTs."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Header, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, verify_token
from shared.db import make_engine, make_sessionmaker
from shared.errors import (
    Conflict,
    NotFound,
    PreconditionRequired,
    Unauthenticated,
    ValidationFailed,
)
from shared.problems import AltRenderer, install_error_handlers, problem
from shared.settings import Settings, get_settings
from shared.telemetry import TracingMiddleware, setup_telemetry

Lifespan = Callable[[FastAPI], Awaitable[None]]


def create_app(
    service: str,
    *,
    title: str,
    description: str,
    settings: Settings | None = None,
    error_renderers: dict[str, AltRenderer] | None = None,
    large_bodies: dict[str, int] | None = None,
) -> FastAPI:
    """A service's app. The engine is built in the lifespan, never at import time.

    `large_bodies` lets the routes under a path prefix take bodies up to a larger size than
    `max_body_bytes` (a bulk import, say); everything else gets the setting.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        setup_telemetry(f"{service}-api", s)
        engine = make_engine(s, service)
        app.state.settings = s
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    # FastAPI's own docs pages load their scripts from a CDN: ours serve them (add_docs)
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app, error_renderers)
    # the last added runs first: tracing, then the control-character guard (the address
    # only), then the rate limit (headers only, so a flood of large bodies is refused before
    # they are read), then the body limit, then the routes
    app.add_middleware(BodySizeLimit, renderers=error_renderers, large_bodies=large_bodies)
    app.add_middleware(WriteRateLimit, renderers=error_renderers)
    app.add_middleware(ControlCharacterGuard, renderers=error_renderers)
    app.add_middleware(TracingMiddleware, service_name=f"{service}-api")
    add_docs(app, title=title)

    @app.get("/health", tags=["ops"])
    async def health(request: Request) -> dict[str, str]:
        """Liveness and readiness: the service answers and its database does."""
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok", "service": service}

    return app


# --- the API's docs -------------------------------------------------------------------------

#: where the docs pages' scripts and styles are served from: the copies the fastapi-offline
#: package ships (Swagger UI and ReDoc), so no page of this origin runs a CDN's script
DOCS_ASSETS = "/docs-assets"
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _docs_enabled(request: Request) -> bool:
    s = _app_settings(request.scope)
    return s.api_docs if s.api_docs is not None else s.deployment_mode == "local"


def _docs_page(request: Request, html: HTMLResponse) -> HTMLResponse:
    if not _docs_enabled(request):
        raise NotFound(
            "the API's docs are off in this deployment (set WAYMARK_API_DOCS=true "
            "to serve them); its description is at /openapi.json"
        )
    # the page's one inline script (Swagger UI's set-up) is allowed by its hash, not by
    # allowing inline scripts
    body = bytes(html.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(body)
    )
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": _DOCS_CSP.format(hashes=hashes).replace("  ", " "),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def add_docs(app: FastAPI, *, title: str) -> None:
    """/docs (Swagger UI) and /redoc with their assets served by this app, never a CDN's;
    off in production unless `api_docs` turns them on (a 404 then)."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _docs_page(
            request,
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{title} – API",
                oauth2_redirect_url=redirect,
                swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            ),
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return _docs_page(request, get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _docs_page(
            request,
            get_redoc_html(
                openapi_url="/openapi.json",
                title=f"{title} – API",
                redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            ),
        )


# --- input limits -----------------------------------------------------------------------------


def _app_settings(scope: Scope) -> Settings:
    # the app's own settings (set in its lifespan); the process's when no lifespan ran
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "settings", None) or get_settings()


async def _refuse(
    scope: Scope,
    send: Send,
    renderers: dict[str, AltRenderer] | None,
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    headers: dict[str, str],
) -> None:
    """An error answered by a middleware, in the format the app's error handler would use
    (problem+json; a FHIR OperationOutcome under /fhir)."""
    path = scope.get("path", "")
    response: Response | None = None
    for prefix, renderer in (renderers or {}).items():
        if path.startswith(prefix):
            response = renderer(status, title, detail, {})
            for k, v in headers.items():
                response.headers[k] = v
            break
    if response is None:
        response = problem(status, title, detail, slug=slug, instance=path, headers=headers)
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class BodySizeLimit:
    """Refuse a request body over `max_body_bytes` with 413, before the app reads any of it.

    A declared Content-Length over the limit is refused at once; otherwise the body is read
    here, counting as it arrives (a chunked body has no Content-Length, and a declared one may
    be a lie), and handed to the app whole. The app would read it into memory anyway, so
    holding it here costs nothing more. (FastAPI's own `max_body_size` is fixed when the app
    is built and answers some of these cases in plain text, not problem+json.)
    """

    def __init__(
        self,
        app: ASGIApp,
        renderers: dict[str, AltRenderer] | None = None,
        large_bodies: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.renderers = renderers
        self.large_bodies = dict(large_bodies or {})

    def limit(self, scope: Scope) -> int:
        limit = _app_settings(scope).max_body_bytes
        path = scope.get("path", "")
        for prefix, allowed in self.large_bodies.items():
            if path.startswith(prefix):
                limit = max(limit, allowed)
        return limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit():
                await _refuse(
                    scope,
                    send,
                    self.renderers,
                    400,
                    "Bad request",
                    "Content-Length must be a number of bytes",
                    slug="bad-request",
                    headers={"Connection": "close"},
                )
                return
            if int(declared) > limit:
                await self._too_large(scope, send, limit)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await self._too_large(scope, send, limit)
                return
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # what follows the body: a disconnect, say
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        # the unread body is left on the connection, so it is closed after the answer
        await _refuse(
            scope,
            send,
            self.renderers,
            413,
            "Request body too large",
            f"the request body is larger than this API accepts ({limit} bytes)",
            slug="payload-too-large",
            headers={"Connection": "close"},
        )


#: C0 controls (NUL, tab, newline, escape ...) and DEL: never part of an address a client
#: means, and NUL in particular is refused by PostgreSQL's text types (a 500 if it got there)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterGuard:
    """400 for a request whose path or query (any key or value, once percent-decoded) holds a
    control character, before any route or other check runs. One guard for every route of
    every app (the dashboard's pages included), so no route has to remember."""

    def __init__(self, app: ASGIApp, renderers: dict[str, AltRenderer] | None = None) -> None:
        self.app = app
        self.renderers = renderers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = self._offending_part(scope)
            if where is not None:
                await _refuse(
                    scope,
                    send,
                    self.renderers,
                    400,
                    "Bad request",
                    f"the request's {where} holds a control character (such as "
                    "NUL, a tab or a line break), which no valid request has",
                    slug="bad-request",
                    headers={},
                )
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _offending_part(scope: Scope) -> str | None:
        # the server has percent-decoded the path already; the query is decoded here as
        # Starlette will decode it (UTF-8, undecodable bytes replaced), keys and values alike
        if _CONTROL.search(scope.get("path", "")):
            return "path"
        raw = scope.get("query_string", b"")
        if raw:
            query = raw.decode("latin-1")
            if _CONTROL.search(query):
                return "query"
            for key, value in parse_qsl(query, keep_blank_values=True):
                if _CONTROL.search(key) or _CONTROL.search(value):
                    return "query"
        return None


class TokenBuckets:
    """A token bucket per key: `burst` requests at once, refilled at `per_minute` a minute.

    Process-local and in memory: with n API replicas a caller may get up to n times the rate.
    That is acceptable for what it is for, stopping a runaway client (a script in a loop, an
    integration retrying without backoff) from taking a replica's database connections; an
    exact ICS-wide quota belongs at the gateway, and a shared store would put a network round
    trip on every write for it.
    """

    #: buckets kept before idle (full) ones are forgotten, so memory stays bounded
    MAX_KEYS = 50_000

    def __init__(
        self, *, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0 when allowed, else the seconds until one is free."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_KEYS:
                self._forget_idle(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        # a bucket that has refilled is the same as no bucket
        self._buckets = {
            k: (t, at)
            for k, (t, at) in self._buckets.items()
            if t + (now - at) * self.rate < self.burst
        }


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteRateLimit:
    """429 with Retry-After for a principal (organisation + user) writing faster than
    `rate_limit_per_minute` after a burst of `rate_limit_burst`.

    Only writes carrying a valid bearer token count: reads are not limited, and a request
    without a valid token is left to the route to refuse (401). The token is verified here
    exactly as the route verifies it, so nobody can spend another user's allowance by naming
    them in an unsigned token.
    """

    def __init__(self, app: ASGIApp, renderers: dict[str, AltRenderer] | None = None) -> None:
        self.app = app
        self.renderers = renderers
        self.buckets: TokenBuckets | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            wait = self._wait(scope)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                s = _app_settings(scope)
                await _refuse(
                    scope,
                    send,
                    self.renderers,
                    429,
                    "Too many requests",
                    f"you have sent more than {s.rate_limit_burst} changes in a burst "
                    f"or {s.rate_limit_per_minute} a minute; try again in {seconds} "
                    "s",
                    slug="too-many-requests",
                    headers={"Retry-After": str(seconds)},
                )
                return
        await self.app(scope, receive, send)

    def _wait(self, scope: Scope) -> float:
        s = _app_settings(scope)
        if s.rate_limit_per_minute == 0:
            return 0.0
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 0.0
        try:
            principal = verify_token(get_settings(), token.strip())
        except Unauthenticated:
            return 0.0  # the route answers 401
        if self.buckets is None:
            self.buckets = TokenBuckets(
                per_minute=s.rate_limit_per_minute, burst=s.rate_limit_burst
            )
        return self.buckets.take(f"{principal.org}/{principal.user}")


# --- query values ---------------------------------------------------------------------------


def _utc_in_range(value: datetime) -> datetime:
    # a time the API can compare with its rows: in UTC (a time without an offset is taken to
    # be UTC) and inside datetime's range once there (9999-12-31T23:59:59-23:59 is not)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "the date and time is out of range: in UTC it must fall between the years 1 and 9999"
        ) from None


#: a date and time in a query parameter: any ISO 8601 form pydantic reads, returned in UTC;
#: out of range once in UTC is a 422, never an overflow inside a route
QueryDateTime = Annotated[datetime, AfterValidator(_utc_in_range)]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # one transaction per request: commits when the route returns, rolls back if it raises,
    # and ends before the response is sent (scope="function") so a failed commit is an error
    async with request.app.state.sessions() as session:
        async with session.begin():
            yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


# --- what every API's routes share --------------------------------------------------------------

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/problem+json": {}}}
    for status, text in [
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Conflict"),
        (412, "Precondition failed"),
        (422, "Invalid request"),
        (428, "Precondition required"),
    ]
}


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def weak_etag(version: int) -> str:
    return f'W/"{version}"'


_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


def parse_etag(value: str) -> int:
    m = _ETAG.match(value.strip())
    if m is None:
        raise ValidationFailed('If-Match must be an ETag such as W/"3"')
    return int(m.group(1))


def expected_version(if_match: str | None) -> int:
    """The version an If-Match names; required, so a concurrent change is never overwritten."""
    if if_match is None:
        raise PreconditionRequired(
            'send If-Match with the ETag you read (e.g. If-Match: W/"3"),'
            " so a concurrent change is not overwritten"
        )
    return parse_etag(if_match)


# --- idempotency keys -------------------------------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER, max_length=200)]


def request_fingerprint(body: Any) -> str:
    """What identifies a request for its Idempotency-Key: pass what the client sent
    (`model_dump(exclude_unset=True)`), never server-generated defaults such as new ids."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise ValidationFailed("Idempotency-Key must be 1-200 printable characters")


async def replay_or_none(
    session: AsyncSession, principal: Principal, key: str | None, fingerprint: str
) -> JSONResponse | None:
    """If this caller already sent this key, return the first response again.

    The advisory lock makes a concurrent retry with the same key wait for the first request
    to commit, so the work is done once.
    """
    if key is None:
        return None
    _check_key(key)
    owner = f"{principal.org}/{principal.user}"
    await session.exec(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))").bindparams(k=f"{owner}|{key}")  # type: ignore[call-overload]
    )
    row = (
        await session.exec(
            text(  # type: ignore[call-overload]
                "SELECT request_hash, status_code, response, headers FROM idempotency_key "
                "WHERE principal = :p AND key = :k"
            ).bindparams(p=owner, k=key)
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new request"
        )
    headers = dict(row.headers)
    headers["Idempotent-Replayed"] = "true"
    return JSONResponse(row.response, status_code=row.status_code, headers=headers)


@dataclass(frozen=True)
class Outcome:
    """What a POST answers: remembered under its Idempotency-Key and replayed on a retry."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


async def once_per_key(
    session: AsyncSession,
    principal: Principal,
    key: str | None,
    request: Any,
    act: Callable[[], Awaitable[Outcome]],
) -> Response:
    """Do `act` once per Idempotency-Key: a retry with the same key and request gets the first
    answer again; the same key with another request is a 409. `request` is what identifies
    the request (what the client sent, never server-made defaults)."""
    fingerprint = request_fingerprint(request)
    replay = await replay_or_none(session, principal, key, fingerprint)
    if replay is not None:
        return replay
    outcome = await act()
    await remember(
        session, principal, key, fingerprint, outcome.status, outcome.body, outcome.headers
    )
    return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers or None)


async def remember(
    session: AsyncSession,
    principal: Principal,
    key: str | None,
    fingerprint: str,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    if key is None:
        return
    await session.exec(
        text(  # type: ignore[call-overload]
            "INSERT INTO idempotency_key (principal, key, request_hash, status_code, response, "
            "headers) VALUES (:p, :k, :h, :s, CAST(:r AS JSONB), CAST(:hd AS JSONB))"
        ).bindparams(
            p=f"{principal.org}/{principal.user}",
            k=key,
            h=fingerprint,
            s=status,
            r=json.dumps(body, default=str),
            hd=json.dumps(headers or {}),
        )
    )
