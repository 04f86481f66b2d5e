"""The care plans FHIR base as a partner's client meets it unaided (issue #19): discovery
(CapabilityStatement, SMART configuration), the QuestionnaireResponse's canonical resolving to
the published Questionnaire (by GET and by `?url=`), CarePlan.subject resolving to a minimal
Patient under the plan's own access rules, and FHIR's media type in the OpenAPI document."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaire import Questionnaire
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.care_plans.domain.screening import INSTRUMENTS
from shared.settings import Settings
from shared.vocabulary import Instrument
from tests.care_plans.support import World, create_plan, phq9, query
from tests.helpers import fhir_media_mismatches

FHIR_JSON = "application/fhir+json"
SERVED = "http://care-plans/fhir"  # the in-process client's base URL, + /fhir
LEGACY = "https://waymark.nhs.example/fhir/Questionnaire/"


def _media(r: httpx.Response) -> str:
    return r.headers["content-type"].split(";")[0]


class TestDiscovery:
    async def test_metadata_is_a_capability_statement_without_a_token(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await care_plans_client.get("/fhir/metadata")
        assert r.status_code == 200, r.text
        assert _media(r) == FHIR_JSON
        cs = r.json()
        CapabilityStatement.model_validate(cs)
        assert (cs["kind"], cs["fhirVersion"]) == ("instance", "4.0.1")
        served = {x["type"]: x for x in cs["rest"][0]["resource"]}
        assert set(served) == {
            "CarePlan",
            "Goal",
            "Questionnaire",
            "QuestionnaireResponse",
            "Patient",
        }
        q = {i["code"] for i in served["Questionnaire"]["interaction"]}
        assert q == {"read", "search-type"}
        assert {p["name"] for p in served["Questionnaire"]["searchParam"]} >= {"url", "_count"}
        [ext] = cs["rest"][0]["security"]["extension"]
        assert all(e["valueUri"].startswith(settings.issuer) for e in ext["extension"])

    async def test_smart_configuration_is_public(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await care_plans_client.get("/fhir/.well-known/smart-configuration")
        assert r.status_code == 200, r.text
        assert r.json()["issuer"] == settings.issuer


class TestQuestionnaires:
    @pytest.mark.parametrize("instrument", list(Instrument))
    async def test_each_is_the_instruments_own_wording_at_its_canonical(
        self, care_plans_client: httpx.AsyncClient, settings: Settings, instrument: Instrument
    ) -> None:
        w = World(settings)
        r = await care_plans_client.get(
            f"/fhir/Questionnaire/{instrument.value}", headers=w.holder_h()
        )
        q = r.json()
        Questionnaire.model_validate(q)
        assert q["url"] == f"{SERVED}/Questionnaire/{instrument.value}"
        spec = INSTRUMENTS[instrument]
        assert [i["text"] for i in q["item"]] == list(spec.items)
        for n, item in enumerate(q["item"], start=1):
            assert [
                (o["valueCoding"]["code"], o["valueCoding"]["display"])
                for o in item["answerOption"]
            ] == [(c, d) for c, d, _ in spec.answers_for(n)]

    @pytest.mark.parametrize("canonical", [f"{SERVED}/Questionnaire/", LEGACY])
    async def test_search_by_url_finds_it(
        self, care_plans_client: httpx.AsyncClient, settings: Settings, canonical: str
    ) -> None:
        w = World(settings)
        r = await care_plans_client.get(
            "/fhir/Questionnaire", params={"url": canonical + "GAD-7"}, headers=w.holder_h()
        )
        assert r.status_code == 200, r.text
        assert _media(r) == FHIR_JSON
        bundle = r.json()
        Bundle.model_validate(bundle)
        assert bundle["total"] == 1
        [entry] = bundle["entry"]
        assert entry["fullUrl"] == f"{SERVED}/Questionnaire/GAD-7"
        assert entry["resource"]["id"] == "GAD-7"
        assert {x["relation"] for x in bundle["link"]} == {"self", "first"}
        none = await care_plans_client.get(
            "/fhir/Questionnaire", params={"url": LEGACY + "PHQ-2"}, headers=w.holder_h()
        )
        assert none.json()["total"] == 0

    async def test_search_without_url_pages_through_all_three(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        url: str | None = "/fhir/Questionnaire?_count=2"
        seen = []
        while url:
            bundle = (await care_plans_client.get(url, headers=w.holder_h())).json()
            assert bundle["total"] == 3
            seen += [e["resource"]["id"] for e in bundle["entry"]]
            nxt = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
            url = f"{urlsplit(nxt).path}?{urlsplit(nxt).query}" if nxt else None
        assert sorted(seen) == sorted(i.value for i in Instrument)

    async def test_a_responses_canonical_resolves(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        a = (
            await care_plans_client.post(
                f"/care-plans/{plan['id']}/assessments",
                json={"instrument": "PHQ-9", "answers": phq9(7, 1)},
                headers=w.holder_h(),
            )
        ).json()
        qr = (
            await care_plans_client.get(
                f"/fhir/QuestionnaireResponse/{a['id']}", headers=w.holder_h()
            )
        ).json()
        canonical = qr["questionnaire"]
        assert canonical.startswith(SERVED)
        parts = urlsplit(canonical)
        q = (await care_plans_client.get(parts.path, headers=w.holder_h())).json()
        assert q["url"] == canonical
        assert [i["linkId"] for i in q["item"]] == [i["linkId"] for i in qr["item"]]
        assert qr["subject"]["reference"] == f"Patient/{plan['patient_id'].replace('_', '-')}"


class TestPatientReference:
    async def test_care_plan_subject_resolves_to_a_minimal_patient(
        self,
        care_plans_client: httpx.AsyncClient,
        care_plans_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        cp = (
            await care_plans_client.get(f"/fhir/CarePlan/{plan['id']}", headers=w.holder_h())
        ).json()
        ref = cp["subject"]
        assert ref["identifier"]["value"] == plan["patient_id"]
        for who in (w.holder_h(), w.as_(w.consented)):
            r = await care_plans_client.get(f"/fhir/{ref['reference']}", headers=who)
            assert r.status_code == 200, r.text
            assert _media(r) == FHIR_JSON
            patient = r.json()
            Patient.model_validate(patient)
            assert set(patient) == {"resourceType", "id", "identifier"}
            assert plan["_nhs_number"] not in json.dumps(patient)
        outsider = await care_plans_client.get(
            f"/fhir/{ref['reference']}", headers=w.as_(w.outsider)
        )
        assert outsider.status_code == 404
        assert outsider.json()["resourceType"] == "OperationOutcome"
        assert (await care_plans_client.get(f"/fhir/{ref['reference']}")).status_code == 401
        # the reads and the refusal are audited, with who asked
        audit = await query(
            care_plans_sessions,
            "SELECT actor_org, action FROM audit_log WHERE patient_id = :p "
            "AND resource_type = 'Patient' ORDER BY at",
            p=plan["patient_id"],
        )
        assert [(a.actor_org, a.action) for a in audit] == [
            (w.holder, "read"),
            (w.consented, "read"),
            (w.outsider, "read-denied"),
        ]


class TestOpenApi:
    async def test_fhir_routes_are_documented_as_fhir_json(
        self, care_plans_client: httpx.AsyncClient
    ) -> None:
        doc = (await care_plans_client.get("/openapi.json")).json()
        assert "/fhir/metadata" in doc["paths"]
        assert fhir_media_mismatches(doc) == []
