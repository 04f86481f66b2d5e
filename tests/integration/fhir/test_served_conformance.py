"""What every Waymark FHIR base serves passes the reference validator (issue #19): HAPI FHIR's
instance validator with the R4 4.0.1 core definitions (tests/integration/fhir/hapi.py), run once
over a sample of every resource type each base answers with, as the running code answers it:
CapabilityStatements, ServiceRequest, Task, Patient, CarePlan, Goal, Questionnaires,
QuestionnaireResponse, Encounter, a paged search Bundle (with its links) and OperationOutcomes.
Each must have 0 errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings
from tests.care_plans.support import World, create_plan, phq9
from tests.conftest import auth
from tests.helpers import synthetic_nhs_number
from tests.integration.fhir import hapi
from tests.integration.fhir.support import bundle, encounter
from tests.referrals.support import create, new_org, new_parties

FHIR_JSON = "application/fhir+json"


async def _fhir(client: httpx.AsyncClient, url: str, status: int = 200, **kw: Any) -> Any:
    r = await client.get(url, **kw)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    assert r.headers["content-type"].split(";")[0] == FHIR_JSON, url
    return r.json()


async def _referrals_samples(
    client: httpx.AsyncClient, settings: Settings, referrals_sessions: Any
) -> dict[str, Any]:
    parties = await new_parties(settings, referrals_sessions)
    h = parties.referrer(settings)
    nhs = synthetic_nhs_number()
    patient = {"nhs_number": nhs, "given_name": "Sam", "family_name": "Synthetic"}
    patient["birth_date"] = "1990-02-02"
    made = [await create(client, settings, parties, patient=patient) for _ in range(3)]
    rid = made[0]["id"]
    task = await _fhir(client, f"/fhir/Task/{rid}", headers=h)
    page2 = await _fhir(
        client,
        "/fhir/ServiceRequest",
        params={"patient": f"https://fhir.nhs.uk/Id/nhs-number|{nhs}", "_count": 1, "_offset": 1},
        headers=h,
    )
    assert {x["relation"] for x in page2["link"]} == {"self", "first", "previous", "next"}
    stranger = auth(settings, role="clinician", org=new_org())
    return {
        "referrals/CapabilityStatement": await _fhir(client, "/fhir/metadata"),
        "referrals/ServiceRequest": await _fhir(client, f"/fhir/ServiceRequest/{rid}", headers=h),
        "referrals/Task": task,
        "referrals/Patient": await _fhir(client, f"/fhir/{task['for']['reference']}", headers=h),
        "referrals/Bundle-searchset-page-2": page2,
        "referrals/Bundle-Task-search": await _fhir(
            client, "/fhir/Task", params={"based-on": f"ServiceRequest/{rid}"}, headers=h
        ),
        "referrals/OperationOutcome-bad-count": await _fhir(
            client, "/fhir/ServiceRequest", 422, params={"_count": "0"}, headers=stranger
        ),
        "referrals/OperationOutcome-not-found": await _fhir(
            client, f"/fhir/ServiceRequest/{rid}", 404, headers=stranger
        ),
    }


async def _care_plans_samples(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    w = World(settings)
    h = w.holder_h()
    plan = await create_plan(client, w)
    a = await client.post(
        f"/care-plans/{plan['id']}/assessments",
        json={"instrument": "PHQ-9", "answers": phq9(7, 1)},
        headers=h,
    )
    assert a.status_code == 201, a.text
    cp = await _fhir(client, f"/fhir/CarePlan/{plan['id']}", headers=h)
    out = {
        "care-plans/CapabilityStatement": await _fhir(client, "/fhir/metadata"),
        "care-plans/CarePlan": cp,
        "care-plans/Goal": await _fhir(client, f"/fhir/{cp['goal'][0]['reference']}", headers=h),
        "care-plans/Patient": await _fhir(client, f"/fhir/{cp['subject']['reference']}", headers=h),
        "care-plans/QuestionnaireResponse": await _fhir(
            client, f"/fhir/QuestionnaireResponse/{a.json()['id']}", headers=h
        ),
        "care-plans/Bundle-Questionnaire-search": await _fhir(
            client, "/fhir/Questionnaire", params={"_count": 2}, headers=h
        ),
        "care-plans/OperationOutcome-not-found": await _fhir(
            client, "/fhir/Questionnaire/PHQ-2", 404, headers=h
        ),
    }
    for qid in ("STarT-Back", "PHQ-9", "GAD-7"):
        out[f"care-plans/Questionnaire-{qid}"] = await _fhir(
            client, f"/fhir/Questionnaire/{qid}", headers=h
        )
    return out


async def _integration_samples(client: httpx.AsyncClient, sender: Any) -> dict[str, Any]:
    r = await client.post(
        "/fhir/Encounter",
        content=json.dumps(encounter(synthetic_nhs_number())),
        headers=sender.headers,
    )
    assert r.status_code == 201, r.text
    bad = await client.post(
        "/fhir/Encounter",
        content=json.dumps({"resourceType": "Encounter", "status": "wibble"}),
        headers=sender.headers,
    )
    assert bad.status_code == 422, bad.text
    batch = await client.post(
        "/fhir",
        content=json.dumps(
            bundle(
                "batch",
                encounter(synthetic_nhs_number()),
                {"resourceType": "Encounter", "status": "wibble"},
            )
        ),
        headers=sender.headers,
    )
    assert batch.status_code == 200, batch.text
    return {
        "integration/Bundle-batch-response": batch.json(),
        "integration/CapabilityStatement": await _fhir(client, "/fhir/metadata"),
        "integration/Encounter": await _fhir(client, r.headers["location"], headers=sender.headers),
        "integration/OperationOutcome-invalid": bad.json(),
    }


async def test_every_base_serves_what_the_reference_validator_accepts(
    referrals_client: httpx.AsyncClient,
    care_plans_client: httpx.AsyncClient,
    integration_client: httpx.AsyncClient,
    fhir_sender: Any,
    settings: Settings,
    referrals_sessions: Any,
    tmp_path: Path,
) -> None:
    samples = {
        **await _referrals_samples(referrals_client, settings, referrals_sessions),
        **await _care_plans_samples(care_plans_client, settings),
        **await _integration_samples(integration_client, await fhir_sender()),
    }
    kinds = {s["resourceType"] for s in samples.values()}
    assert kinds == {
        "CapabilityStatement",
        "ServiceRequest",
        "Task",
        "Patient",
        "Bundle",
        "OperationOutcome",
        "CarePlan",
        "Goal",
        "Questionnaire",
        "QuestionnaireResponse",
        "Encounter",
    }
    files = {}
    for name, resource in samples.items():
        path = tmp_path / (name.replace("/", "__") + ".json")
        path.write_text(json.dumps(resource))
        files[name] = path
    verdicts = hapi.validate(list(files.values()))
    errors = {
        name: verdicts[str(path)].messages
        for name, path in files.items()
        if verdicts[str(path)].errors
    }
    assert errors == {}, json.dumps(errors, indent=1)[:6000]
