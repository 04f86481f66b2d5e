"""The integration FHIR base as a partner's client meets it unaided (issue #19): discovery
(CapabilityStatement, SMART configuration), an absolute Location at the contact's version under
the base that served the request, and FHIR's media type in the OpenAPI document."""

from __future__ import annotations

import json

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from shared.settings import Settings
from tests.helpers import fhir_media_mismatches, synthetic_nhs_number
from tests.integration.fhir.support import encounter

FHIR_JSON = "application/fhir+json"
SERVED = "http://integration/fhir"  # the in-process client's base URL, + /fhir


class TestDiscovery:
    async def test_metadata_says_what_a_source_may_send(
        self, integration_client: httpx.AsyncClient, infra: Settings
    ) -> None:
        r = await integration_client.get("/fhir/metadata")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].split(";")[0] == FHIR_JSON
        cs = r.json()
        CapabilityStatement.model_validate(cs)
        assert (cs["kind"], cs["status"], cs["fhirVersion"]) == ("instance", "active", "4.0.1")
        [rest] = cs["rest"]
        codes = {x["type"]: {i["code"] for i in x["interaction"]} for x in rest["resource"]}
        assert codes == {"Encounter": {"create", "read", "vread"}, "Appointment": {"create"}}
        assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
        [ext] = rest["security"]["extension"]
        assert all(e["valueUri"].startswith(infra.issuer) for e in ext["extension"])

    async def test_smart_configuration_is_public(
        self, integration_client: httpx.AsyncClient, infra: Settings
    ) -> None:
        r = await integration_client.get("/fhir/.well-known/smart-configuration")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["issuer"] == infra.issuer
        assert "client_credentials" in doc["grant_types_supported"]


class TestLocation:
    async def test_a_created_encounters_location_is_absolute_at_its_version(
        self, integration_client: httpx.AsyncClient, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        r = await integration_client.post(
            "/fhir/Encounter",
            content=json.dumps(encounter(synthetic_nhs_number())),
            headers=sender.headers,
        )
        assert r.status_code == 201, r.text
        body = r.json()
        want = f"{SERVED}/Encounter/{body['id']}/_history/{body['meta']['versionId']}"
        assert r.headers["location"] == want
        again = await integration_client.get(r.headers["location"], headers=sender.headers)
        assert again.status_code == 200 and again.json()["id"] == body["id"]


class TestOpenApi:
    async def test_fhir_routes_are_documented_as_fhir_json(
        self, integration_client: httpx.AsyncClient
    ) -> None:
        doc = (await integration_client.get("/openapi.json")).json()
        assert "/fhir/metadata" in doc["paths"]
        assert fhir_media_mismatches(doc) == []
