"""The referrals FHIR base as a partner's client meets it unaided (issue #19): discovery
(CapabilityStatement, SMART configuration), paged search that a client follows to the end,
absolute Locations at a version, fullUrls under the base that served the request, a Task.for
that resolves to a minimal Patient, 400 for unreadable JSON, FHIRPath-clean OperationOutcomes
and FHIR's media type in the OpenAPI document."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import fhir_media_mismatches, synthetic_nhs_number
from tests.referrals.api.test_fhir import post_sr, service_request
from tests.referrals.support import Parties, audit_of, create, new_org, new_parties

FHIR_JSON = "application/fhir+json"
SERVED = "http://referrals/fhir"  # the in-process client's base URL, + /fhir
NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
async def parties(settings: Settings, referrals_sessions: async_sessionmaker) -> Parties:
    return await new_parties(settings, referrals_sessions)


def _media(r: httpx.Response) -> str:
    return r.headers["content-type"].split(";")[0]


class TestDiscovery:
    async def test_metadata_is_a_capability_statement_without_a_token(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await referrals_client.get("/fhir/metadata")
        assert r.status_code == 200, r.text
        assert _media(r) == FHIR_JSON
        cs = r.json()
        CapabilityStatement.model_validate(cs)
        assert (cs["kind"], cs["status"], cs["fhirVersion"]) == ("instance", "active", "4.0.1")
        assert cs["implementation"]["url"] == SERVED
        [rest] = cs["rest"]
        served = {x["type"]: x for x in rest["resource"]}
        assert set(served) == {"ServiceRequest", "Task", "Patient"}
        codes = {t: {i["code"] for i in x["interaction"]} for t, x in served.items()}
        assert codes["ServiceRequest"] == {"read", "search-type", "create"}
        assert codes["Task"] == {"read", "search-type", "update"}
        assert codes["Patient"] == {"read"}
        params = {p["name"] for p in served["ServiceRequest"]["searchParam"]}
        assert params == {"patient", "status", "_lastUpdated", "_count", "_offset"}
        [ext] = rest["security"]["extension"]
        uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
        assert uris["token"].startswith(settings.issuer)
        assert uris["authorize"].startswith(settings.issuer)

    async def test_smart_configuration_points_at_the_openid_provider(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await referrals_client.get("/fhir/.well-known/smart-configuration")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["issuer"] == settings.issuer
        oidc = (await referrals_client.get("/fhir/metadata")).json()
        uris = {
            e["url"]: e["valueUri"]
            for e in oidc["rest"][0]["security"]["extension"][0]["extension"]
        }
        assert doc["token_endpoint"] == uris["token"]
        assert doc["authorization_endpoint"] == uris["authorize"]
        assert doc["jwks_uri"].startswith(settings.issuer)
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert "authorization_code" in doc["grant_types_supported"]
        assert {"launch-standalone", "permission-v2"} <= set(doc["capabilities"])


class TestPaging:
    async def test_following_next_gets_every_match_once(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        nhs = synthetic_nhs_number()
        patient = {
            "nhs_number": nhs,
            "given_name": "Sam",
            "family_name": "Synthetic",
            "birth_date": "1990-02-02",
        }
        made = {(await create(referrals_client, settings, parties, patient=patient))["id"]}
        for _ in range(4):
            made.add((await create(referrals_client, settings, parties, patient=patient))["id"])
        url: str | None = f"/fhir/ServiceRequest?patient={NHS}|{nhs}&_count=2"
        seen: list[str] = []
        pages = []
        while url:
            r = await referrals_client.get(url, headers=parties.referrer(settings))
            assert r.status_code == 200, r.text
            bundle = r.json()
            Bundle.model_validate(bundle)
            assert bundle["total"] == 5
            links = {x["relation"]: x["url"] for x in bundle["link"]}
            pages.append(set(links))
            for e in bundle["entry"]:
                assert e["fullUrl"] == f"{SERVED}/ServiceRequest/{e['resource']['id']}"
                seen.append(e["resource"]["id"])
            nxt = links.get("next")
            if nxt:
                assert nxt.startswith(f"{SERVED}/ServiceRequest?")
                assert "patient=" in nxt and "_count=2" in nxt
                parts = urlsplit(nxt)
                url = f"{parts.path}?{parts.query}"
            else:
                url = None
        assert sorted(seen) == sorted(made) and len(seen) == 5
        assert pages == [
            {"self", "first", "next"},
            {"self", "first", "previous", "next"},
            {"self", "first", "previous"},
        ]

    async def test_a_bad_count_names_the_parameter_without_a_non_fhirpath_expression(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await referrals_client.get(
            "/fhir/ServiceRequest",
            params={"_count": "0"},
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code in (400, 422), r.text
        body = r.json()
        OperationOutcome.model_validate(body)
        assert "_count" in " ".join(i.get("diagnostics", "") for i in body["issue"])
        for issue in body["issue"]:
            for e in issue.get("expression", []):
                assert not e.startswith(("query.", "body.", "header.")), e


class TestCreateAndRead:
    async def test_location_is_absolute_at_the_version(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        r = await post_sr(
            referrals_client, parties.referrer(settings), service_request(parties.service.id)
        )
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["meta"]["versionId"] == "1"
        assert r.headers["location"] == f"{SERVED}/ServiceRequest/{out['id']}/_history/1"

    @pytest.mark.parametrize(
        ("change", "fhirpath"),
        [
            ({"authoredOn": "yesterday"}, "ServiceRequest.authoredOn"),
            ({"reasonCode": [{"coding": "x"}]}, "ServiceRequest.reasonCode[0].coding"),
        ],
    )
    async def test_an_invalid_element_is_named_by_fhirpath(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        change: dict[str, object],
        fhirpath: str,
    ) -> None:
        sr = {**service_request(parties.service.id), **change}
        r = await post_sr(referrals_client, parties.referrer(settings), sr)
        assert r.status_code == 422, r.text
        body = r.json()
        OperationOutcome.model_validate(body)
        paths = [e for i in body["issue"] for e in i.get("expression", [])]
        assert paths and all(p.startswith(fhirpath) for p in paths), paths

    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", "/fhir/ServiceRequest"), ("POST", "/fhir/Task"), ("PUT", "/fhir/Task/x")],
    )
    async def test_unparseable_json_is_a_400_operation_outcome(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        method: str,
        path: str,
    ) -> None:
        r = await referrals_client.request(
            method,
            path,
            content=b'{"resourceType": "ServiceRequest",',
            headers={**parties.referrer(settings), "content-type": FHIR_JSON},
        )
        assert r.status_code == 400, r.text
        assert _media(r) == FHIR_JSON
        OperationOutcome.model_validate(r.json())


class TestPatientReference:
    async def test_task_for_resolves_to_a_minimal_patient(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        referral = await create(referrals_client, settings, parties)
        task = (
            await referrals_client.get(
                f"/fhir/Task/{referral['id']}", headers=parties.referrer(settings)
            )
        ).json()
        ref = task["for"]
        assert ref["reference"] == f"Patient/{referral['patient_id'].replace('_', '-')}"
        assert ref["identifier"]["value"] == referral["patient_id"]  # kept for the unfollowing
        for who in (parties.referrer(settings), parties.receiver(settings)):
            r = await referrals_client.get(f"/fhir/{ref['reference']}", headers=who)
            assert r.status_code == 200, r.text
            assert _media(r) == FHIR_JSON
            patient = r.json()
            Patient.model_validate(patient)
            assert set(patient) == {"resourceType", "id", "identifier"}  # no name, no NHS no.
            assert patient["identifier"][0]["value"] == referral["patient_id"]
            assert json.dumps(patient).find(referral["nhs_number"]) == -1
        # each read is audited, with who read it
        reads = [
            (a.actor_org, a.action)
            for a in await audit_of(referrals_sessions, referral["patient_id"])
            if a.resource_type == "Patient"
        ]
        assert reads == [(parties.referrer_org, "read"), (parties.receiver_org, "read")]

    async def test_a_search_by_the_followed_reference_finds_the_referrals(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await create(referrals_client, settings, parties)
        h = parties.referrer(settings)
        task = (await referrals_client.get(f"/fhir/Task/{referral['id']}", headers=h)).json()
        r = await referrals_client.get(
            "/fhir/ServiceRequest", params={"patient": task["for"]["reference"]}, headers=h
        )
        assert r.status_code == 200, r.text
        assert [e["resource"]["id"] for e in r.json()["entry"]] == [referral["id"]]

    async def test_a_patient_the_caller_has_no_referral_for_is_a_404(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await create(referrals_client, settings, parties)
        stranger = auth(settings, role="clinician", org=new_org())
        r = await referrals_client.get(f"/fhir/Patient/{referral['patient_id']}", headers=stranger)
        assert r.status_code == 404, r.text
        absent = await referrals_client.get("/fhir/Patient/nobody-at-all", headers=stranger)
        assert absent.status_code == 404
        assert r.json()["issue"][0]["code"] == absent.json()["issue"][0]["code"]
        anonymous = await referrals_client.get(f"/fhir/Patient/{referral['patient_id']}")
        assert anonymous.status_code == 401


class TestOpenApi:
    async def test_fhir_routes_are_documented_as_fhir_json(
        self, referrals_client: httpx.AsyncClient
    ) -> None:
        doc = (await referrals_client.get("/openapi.json")).json()
        assert "/fhir/metadata" in doc["paths"]
        assert fhir_media_mismatches(doc) == []
