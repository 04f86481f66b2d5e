"""The input limits every service's app shares, as ASGI middleware that answers before any
route runs: the request body's size, control characters in the address, and the rate of
writes per principal. A refusal has the format the app's error handler would use."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.access import Role
from shared.auth import remember_verified, verify_token
from shared.errors import WaymarkError
from shared.problems import AltRenderer, problem
from shared.settings import Settings, get_settings


def app_settings(scope: Scope) -> Settings:
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
        limit = app_settings(scope).max_body_bytes
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

    Only writes carrying a valid bearer token count: reads are not limited, a request without a
    valid token is left to the route to refuse (401), and Waymark's own service credentials
    (role `service`) are not limited. The token is verified here
    exactly as the route verifies it, so nobody can spend another user's allowance by naming
    them in an unsigned token.
    """

    def __init__(self, app: ASGIApp, renderers: dict[str, AltRenderer] | None = None) -> None:
        self.app = app
        self.renderers = renderers
        self.buckets: TokenBuckets | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            wait = await self._wait(scope)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                s = app_settings(scope)
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

    async def _wait(self, scope: Scope) -> float:
        s = app_settings(scope)
        if s.rate_limit_per_minute == 0:
            return 0.0
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 0.0
        try:
            principal = await verify_token(get_settings(), token.strip())
        except WaymarkError:
            return 0.0  # the route answers 401 (or 503 when the issuer is away)
        remember_verified(scope, token.strip(), principal)  # the route's check reuses it
        if Role.SERVICE in principal.roles:
            # Waymark's own processes (the bulk importer's historical referrals, a year of
            # them at go-live) are not the runaway clients this guards against
            return 0.0
        if self.buckets is None:
            self.buckets = TokenBuckets(
                per_minute=s.rate_limit_per_minute, burst=s.rate_limit_burst
            )
        return self.buckets.take(f"{principal.org}/{principal.user}")
