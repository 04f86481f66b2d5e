"""The FastAPI adapter for `shared.errors`: every error rendered as RFC 9457 problem+json by
one set of handlers (the only place the error hierarchy meets the web framework)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.errors import PROBLEM_BASE, PROBLEM_JSON, WaymarkError

logger = logging.getLogger(__name__)

_RESERVED = {"type", "title", "status", "detail", "instance"}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    # extension members may not overwrite the standard ones (RFC 9457 section 3.2)
    body: dict[str, Any] = {k: v for k, v in extra.items() if k not in _RESERVED}
    body.update(
        {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": instance,
        }
    )
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def _clean_validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        # never echo the offending input back: it may hold patient data
        out.append(
            {
                "location": [str(p) for p in e.get("loc", ())],
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
        )
    return out


#: renders an error for a path prefix in another format (e.g. FHIR OperationOutcome):
#: (status, title, detail, extra) -> response
AltRenderer = Callable[[int, str, str, dict[str, Any]], Response]


#: seconds a client is asked to wait when the database is unavailable
UNAVAILABLE_RETRY_AFTER = 2

#: SQLSTATE classes and codes that mean the connection or the server went away, not the query:
#: 08 connection exception, 57P01-57P03 admin/crash shutdown and "cannot connect now"
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Whether an error (or what caused it) says the database could not be reached or went
    away mid-request, rather than that the request or the code was wrong."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError | sa_exc.TimeoutError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.InterfaceError):
            return True  # asyncpg's "connection is closed" and kin
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        todo += [
            e
            for e in (current.__cause__, current.__context__, getattr(current, "orig", None))
            if isinstance(e, BaseException)
        ]
    return False


def allowed_methods(request: Request) -> str:
    """Every method the addressed resource supports (RFC 9110 15.5.6), for a 405's `Allow`:
    FastAPI makes a route per method, and the router names only the first route's methods.
    Each method is asked of the app's own routes, as the router would match it."""
    methods = set()
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, renderers: dict[str, AltRenderer] | None = None) -> None:
    """One handler for every error; paths under a prefix in `renderers` get that format."""
    alt = dict(renderers or {})

    def render(
        request: Request,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        if status == 401:  # RFC 9110 15.5.2: a 401 carries the challenge, in any format
            headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
        for prefix, renderer in alt.items():
            if request.url.path.startswith(prefix):
                response = renderer(status, title, detail, extra)
                for k, v in (headers or {}).items():
                    response.headers[k] = v
                return response
        return problem(
            status, title, detail, slug=slug, instance=request.url.path, headers=headers, **extra
        )

    @app.exception_handler(WaymarkError)
    async def _waymark(request: Request, exc: WaymarkError) -> Response:
        return render(
            request,
            exc.status,
            exc.title,
            exc.message,
            slug=exc.slug,
            headers=exc.headers or None,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = _clean_validation_errors(list(exc.errors()))
        detail = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors[:5])
        return render(
            request,
            422,
            "Invalid request",
            detail or "the request is not valid",
            slug="invalid-request",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return render(
            request,
            exc.status_code,
            str(exc.detail),
            str(exc.detail),
            slug=f"http-{exc.status_code}",
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):
            # not a bug: the database is restarting or unreachable; nothing was changed (the
            # transaction never committed), so the caller may retry with the same key
            logger.warning(
                "database unavailable on %s %s: %s",
                request.method,
                request.url.path,
                type(exc).__name__,
                exc_info=exc,
            )
            return render(
                request,
                503,
                "Service unavailable",
                "the service's database is unavailable; nothing was changed, "
                "retry shortly (with the same Idempotency-Key)",
                slug="service-unavailable",
                headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
            )
        # a bug: log it with the trace, tell the caller nothing internal
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(
            request,
            500,
            "Internal error",
            "an unexpected error occurred; it has been logged",
            slug="internal-error",
        )
