"""What every service's FastAPI app shares: the app factory (errors, tracing, health, input
limits, API docs), the transactional session dependency, and idempotency keys for POSTs.
The input limits live in shared/input_limits.py and the docs pages in shared/api_docs.py,
which only the factory uses."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.api_docs import add_docs
from shared.auth import Principal
from shared.db import make_engine, make_sessionmaker
from shared.errors import Conflict, PreconditionRequired, ValidationFailed
from shared.input_limits import BodySizeLimit, ControlCharacterGuard, WriteRateLimit
from shared.problems import AltRenderer, install_error_handlers
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
        # TracingMiddleware makes the request's server span (and answers its traceparent):
        # FastAPI's own would be a second one, with spans for each dependency, the endpoint and
        # the serialisation on top (issue #20's profile: a visible share of a create)
        telemetry={"tracing": False, "operation_spans": False},
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


async def _one_statement_session(request: Request) -> AsyncIterator[AsyncSession]:
    # for a route whose only write is one statement (a referral's create: its rows, audit entry
    # and event in one INSERT): without an Idempotency-Key that statement commits itself, so
    # the request spares the BEGIN and COMMIT round trips (issue #20); PostgreSQL makes one
    # statement atomic. With a key, the key's row and the write share one transaction
    if request.headers.get("idempotency-key") is not None:
        async for session in _session(request):
            yield session
        return
    async with request.app.state.sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


#: a session for a route that writes with one statement (see `_one_statement_session`)
OneStatementSessionDep = Annotated[AsyncSession, Depends(_one_statement_session, scope="function")]


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


class FastJSONResponse(JSONResponse):
    """A JSON response rendered by orjson (in C) rather than the standard library's json: the
    same compact UTF-8 output for the JSON-ready bodies routes build."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


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
    return FastJSONResponse(row.response, status_code=row.status_code, headers=headers)


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
    if key is None:  # nothing to remember: no fingerprint to compute
        outcome = await act()
    else:
        fingerprint = request_fingerprint(request)
        replay = await replay_or_none(session, principal, key, fingerprint)
        if replay is not None:
            return replay
        outcome = await act()
        await remember(
            session, principal, key, fingerprint, outcome.status, outcome.body, outcome.headers
        )
    return FastJSONResponse(
        outcome.body, status_code=outcome.status, headers=outcome.headers or None
    )


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
