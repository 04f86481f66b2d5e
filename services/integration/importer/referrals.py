"""The referrals service's historical import path, as the importer calls it: with the integration
service's own service token, one referral (its whole history so far) per request.

`POST /referrals/history` answers 201 (created), 200 (known: new steps applied, or none), 409
(the history contradicts the one held), 422 (invalid); 429 (the service's write rate limit) and
503 are waited out as their Retry-After says; anything else stops the import, which
resumes from where it stopped once the cause is fixed (a retry of a referral already posted is
a 200 with nothing new).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared.auth import service_token
from shared.settings import Settings

Outcome = Literal["accepted", "unchanged", "refused"]


#: how many times one request waits out a 429 or 503 (with its Retry-After) before the import
#: stops: the referrals service limits each caller's writes (WAYMARK_RATE_LIMIT_PER_MINUTE)
MAX_WAITS = 120


def _retry_after(resp: httpx.Response) -> float:
    try:
        return min(max(float(resp.headers.get("retry-after", "1")), 0.1), 30.0)
    except ValueError:
        return 1.0


class ReferralsUnavailable(RuntimeError):
    """The referrals service did not answer as the contract says: the import stops here."""


@dataclass(frozen=True)
class Posted:
    outcome: Outcome
    reason: str | None = None
    referral_id: str | None = None


def _problem(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or body
        errors = body.get("errors")
        if errors:
            detail = f"{detail}: {errors}"
        return str(detail)[:500]
    return str(body)[:500]


class HistoryClient:
    """POST and GET of the historical import path."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.AsyncClient(base_url=settings.api_url("referrals"), timeout=60)

    async def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await service_token(self.settings, 'integration')}"}

    async def post(self, body: dict[str, Any]) -> Posted:
        waits = 0
        while True:
            try:
                resp = await self.http.post(
                    "/referrals/history", json=body, headers=await self._headers()
                )
            except httpx.HTTPError as exc:
                raise ReferralsUnavailable(f"the referrals service did not answer: {exc}") from exc
            # the service's write rate limit (429) or a dependency away (503): wait as told
            if resp.status_code not in (429, 503) or waits >= MAX_WAITS:
                break
            waits += 1
            await asyncio.sleep(_retry_after(resp))
        if resp.status_code in (200, 201):
            out = resp.json()
            new = resp.status_code == 201 or int(out.get("steps_applied", 0)) > 0
            return Posted("accepted" if new else "unchanged", referral_id=out.get("referral_id"))
        if resp.status_code in (409, 422):
            word = "contradicts the history held" if resp.status_code == 409 else "invalid"
            return Posted("refused", f"referrals service: {word}: {_problem(resp)}")
        raise ReferralsUnavailable(
            f"the referrals service answered {resp.status_code}: {_problem(resp)}"
        )

    async def stored_steps(self, source_system: str, source_ref: str) -> int | None:
        """How many of the source's steps the referrals service holds (None: not imported)."""
        resp = await self.http.get(
            f"/referrals/history/{source_system}/{source_ref}", headers=await self._headers()
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ReferralsUnavailable(
                f"the referrals service answered {resp.status_code}: {_problem(resp)}"
            )
        return int(resp.json()["stored_steps"])

    async def aclose(self) -> None:
        await self.http.aclose()
