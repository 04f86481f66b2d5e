"""One error hierarchy for every service: plain exceptions, importable by pure domain code.

Services and handlers raise `WaymarkError` subclasses; only `api.py` may raise HTTPException.
One FastAPI adapter (`shared.problems`) renders them as RFC 9457 problem+json.
"""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://waymark.nhs.example/problems/"


class WaymarkError(Exception):
    """A failure the caller can understand and act on."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})  # e.g. Retry-After on a 429 or 503
        self.extra = extra


class ValidationFailed(WaymarkError):
    status, title, slug = 422, "Invalid request", "invalid-request"


class Unauthenticated(WaymarkError):
    status, title, slug = 401, "Not authenticated", "unauthenticated"


class Forbidden(WaymarkError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(WaymarkError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(WaymarkError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(WaymarkError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PreconditionRequired(WaymarkError):
    status, title, slug = 428, "Precondition required", "precondition-required"
