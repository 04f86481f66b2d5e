"""A SMART on FHIR app's view of the running FHIR APIs (issue #19): the reference Python
client, `fhirclient`, against the session's real stack (its own process, ports from settings),
as a partner's app would use it. It discovers the server (prepare(): the CapabilityStatement and
its SMART endpoints, so it can build an authorize URL at the OpenID provider), reads a
ServiceRequest, and runs a paged search following `next` to the end, getting every match once.

fhirclient is blocking (requests): it runs in a thread, never in the test's event loop."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fhirclient import client
from fhirclient.models.servicerequest import ServiceRequest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.helpers import referral_body, synthetic_nhs_number
from tests.referrals.support import new_parties

NHS = "https://fhir.nhs.uk/Id/nhs-number"
N = 5


def _as_the_app(base: str, token: str, nhs: str, one_id: str) -> dict[str, Any]:
    """What the app sees, step by step (blocking: run in a thread)."""
    smart = client.FHIRClient(
        settings={"app_id": "waymark-fhirclient-test", "api_base": base, "redirect_uri": base}
    )
    ready_before = smart.prepare()  # fetches /metadata; no token yet, so not ready
    authorize_url = smart.authorize_url
    smart.server.auth.access_token = token  # as after the code exchange
    read = ServiceRequest.read(one_id, smart.server)
    search = ServiceRequest.where({"patient": f"{NHS}|{nhs}", "_count": "2"})
    pages = list(search.perform_iter(smart.server))
    return {
        "ready_before": ready_before,
        "auth_type": type(smart.server.auth).__name__,
        "authorize_url": authorize_url,
        "read_id": read.id,
        "pages": [[e.resource.id for e in (b.entry or [])] for b in pages],
        "totals": [b.total for b in pages],
    }


async def test_fhirclient_discovers_reads_and_pages_through_a_search(
    running_apps: Settings, settings: Settings, referrals_sessions: async_sessionmaker
) -> None:
    parties = await new_parties(settings, referrals_sessions)
    nhs = synthetic_nhs_number()
    patient = {
        "nhs_number": nhs,
        "given_name": "Sam",
        "family_name": "Synthetic",
        "birth_date": "1990-02-02",
    }
    api = running_apps.api_url("referrals")
    made: list[str] = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        for _ in range(N):
            body = referral_body(
                to_service_id=parties.service.id, to_org=parties.receiver_org, patient=patient
            )
            r = await c.post("/referrals", json=body, headers=parties.referrer(settings))
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
    token = parties.referrer(settings)["Authorization"].removeprefix("Bearer ")

    seen = await asyncio.to_thread(_as_the_app, f"{api}/fhir/", token, nhs, made[0])

    assert seen["ready_before"] is False and seen["auth_type"] == "FHIROAuth2Auth"
    authorize = urlsplit(seen["authorize_url"])
    assert seen["authorize_url"].startswith(running_apps.issuer)
    query = parse_qs(authorize.query)
    assert query["response_type"] == ["code"] and query["client_id"] == ["waymark-fhirclient-test"]
    assert seen["read_id"] == made[0]
    assert [len(p) for p in seen["pages"]] == [2, 2, 1]
    assert seen["totals"] == [N, N, N]
    got = [i for page in seen["pages"] for i in page]
    assert sorted(got) == sorted(made) and len(set(got)) == N


def _discovered(base: str) -> tuple[bool, str | None]:
    smart = client.FHIRClient(settings={"app_id": "waymark-fhirclient-test", "api_base": base})
    return smart.prepare(), smart.authorize_url


async def test_fhirclient_discovers_every_fhir_base(running_apps: Settings) -> None:
    """The care plans and integration bases too: prepare() reads each CapabilityStatement and
    finds the OpenID provider's endpoints in it."""
    for service in ("care_plans", "integration"):
        base = f"{running_apps.api_url(service)}/fhir/"
        ready, authorize_url = await asyncio.to_thread(_discovered, base)
        assert ready is False, service  # no token yet
        assert authorize_url is not None and authorize_url.startswith(running_apps.issuer)
