"""Every API's OpenAPI document is valid OpenAPI (checked by `openapi-spec-validator`, the
validator code generators and gateways use), so a partner can load it."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version

from tests.security.conftest import Api

SERVICES = ("referrals", "directory", "care_plans", "notifications", "integration")


@pytest.mark.parametrize("service", SERVICES)
async def test_the_openapi_document_is_valid(service: str, apis: dict[str, Api]) -> None:
    r = await apis[service].client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert str(get_spec_version(spec)) == "OpenAPIV3.1"
    validate(spec)  # raises with the first error, naming where it is
