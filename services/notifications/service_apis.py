"""Notifications' reads of the other services: their HTTP APIs called with the caller's own
token (so each service's authorisation and audit apply). The dashboard's pages and the alert
inbox (a safety alert's crisis plan) both read through it.

Nothing here reads another service's tables. Every failure is an answer the page can show:
an `ApiError` with the service's status and message, or `ServiceUnavailable` when the service
could not be reached.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request

from shared.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}$"
)
SERVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PATIENT_ID_RE = re.compile(r"^[a-z0-9_]{1,80}$")

SERVICE_NAMES = {
    "referrals": "referrals",
    "directory": "directory of services",
    "care_plans": "care plans",
}


class ApiError(Exception):
    """The service answered with an error (its status and its own words)."""

    def __init__(
        self, service: str, status: int, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{service}: {status} {message}")
        self.service, self.status, self.message = service, status, message
        self.extra = extra or {}


class ServiceUnavailable(ApiError):
    """The service could not be reached, or failed on its side (5xx)."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(service, 503, message)


def _problem_detail(resp: httpx.Response) -> tuple[str, dict[str, Any]]:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase or f"HTTP {resp.status_code}", {}
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or resp.reason_phrase
        return str(detail), body
    return resp.reason_phrase or f"HTTP {resp.status_code}", {}


class Apis:
    """Calls to the other Waymark APIs as the signed-in user."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def get(
        self,
        service: str,
        path: str,
        token: str,
        params: list[tuple[str, str]] | dict[str, Any] | None = None,
    ) -> tuple[Any, httpx.Headers]:
        url = self.settings.api_url(service).rstrip("/") + path
        words = SERVICE_NAMES.get(service, service)
        try:
            resp = await self.http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            logger.warning("dashboard: %s API unreachable (%s)", service, type(exc).__name__)
            raise ServiceUnavailable(
                service, f"the {words} service could not be reached; try again shortly"
            ) from None
        if resp.status_code >= 500:
            logger.warning(
                "dashboard: %s API answered %s on %s", service, resp.status_code, path.split("?")[0]
            )
            raise ServiceUnavailable(
                service, f"the {words} service had a problem; try again shortly"
            )
        if resp.status_code >= 400:
            detail, body = _problem_detail(resp)
            raise ApiError(service, resp.status_code, detail, body)
        try:
            return resp.json(), resp.headers
        except ValueError:
            raise ServiceUnavailable(
                service, f"the {words} service sent an answer the dashboard could not read"
            ) from None

    # --- referrals ----------------------------------------------------------------------
    async def referral(self, token: str, referral_id: str) -> dict[str, Any]:
        if not UUID_RE.fullmatch(referral_id):
            raise ApiError("referrals", 404, f"no referral {referral_id} that you may see")
        body, _ = await self.get("referrals", f"/referrals/{quote(referral_id, safe='')}", token)
        return dict(body)

    async def referral_history(self, token: str, referral_id: str) -> list[dict[str, Any]]:
        if not UUID_RE.fullmatch(referral_id):
            raise ApiError("referrals", 404, f"no referral {referral_id} that you may see")
        body, _ = await self.get(
            "referrals", f"/referrals/{quote(referral_id, safe='')}/history", token
        )
        return list(body)

    async def worklist(
        self, token: str, *, states: list[str], limit: int, offset: int
    ) -> dict[str, Any]:
        params = [("state", s) for s in states] + [("limit", str(limit)), ("offset", str(offset))]
        body, _ = await self.get("referrals", "/worklist", token, params)
        return dict(body)

    # --- directory ----------------------------------------------------------------------
    async def search_services(self, token: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        body, _ = await self.get("directory", "/services", token, params)
        return dict(body)

    async def service(self, token: str, service_id: str) -> dict[str, Any]:
        if not SERVICE_ID_RE.fullmatch(service_id):
            raise ApiError("directory", 404, f"no service {service_id}")
        body, _ = await self.get("directory", f"/services/{quote(service_id, safe='')}", token)
        return dict(body)

    async def vocabularies(self, token: str) -> dict[str, Any]:
        body, _ = await self.get("directory", "/vocabularies", token)
        return dict(body)

    # --- care plans ---------------------------------------------------------------------
    async def care_plan_summary(self, token: str, patient_id: str) -> dict[str, Any]:
        """The person's plan summary (what matters, goals, communication, the latest screening
        results): their plan by patient id, then its summary."""
        if not PATIENT_ID_RE.fullmatch(patient_id):
            raise ApiError("care_plans", 404, f"no care plan for {patient_id}")
        plan, _ = await self.get(
            "care_plans", f"/patients/{quote(patient_id, safe='')}/care-plan", token
        )
        plan_id = str(plan.get("id", "")) if isinstance(plan, dict) else ""
        if not UUID_RE.fullmatch(plan_id):
            raise ServiceUnavailable(
                "care_plans", "the care plans service sent an answer the dashboard could not read"
            )
        body, _ = await self.get("care_plans", f"/care-plans/{plan_id}/summary", token)
        return dict(body)


async def close_http(app: FastAPI) -> None:
    http: httpx.AsyncClient | None = getattr(app.state, "dashboard_http", None)
    if http is not None:
        await http.aclose()
        app.state.dashboard_http = None


def apis(request: Request) -> Apis:
    """The API caller of this app: one pooled HTTP client, made on first use."""
    state = request.app.state
    if getattr(state, "dashboard_http", None) is None:
        state.dashboard_http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
    return Apis(state.settings, state.dashboard_http)
