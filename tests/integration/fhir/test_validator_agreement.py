"""Waymark's verdict on FHIR content agrees with the reference validator's (HAPI FHIR's
instance validator, FHIR R4 4.0.1 core definitions, offline): on each fixture both accept or
both refuse, and where both refuse they point at the same place. The valid fixtures are then
taken by the API, and the invalid ones refused with a 422 OperationOutcome naming that place.

Fixtures: fixtures/validator/{valid,invalid}/ (Encounters, Appointments, transaction and batch
Bundles), the subscriptions backport IG's own R4 notification examples (fixtures/backport/),
and the Encounter Waymark answers with. The IG's profiles (meta.profile) are not available
offline (its package is not on Maven Central or npm), so its examples are checked against the
R4 core definitions: their copies for the validator leave meta.profile out."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.integration.fhir import mapping, validation
from tests.integration.fhir import hapi
from tests.integration.fhir.test_api import expressions, outcome

FIXTURES = Path(__file__).parent / "fixtures"
VALID = sorted((FIXTURES / "validator" / "valid").glob("*.json"))
INVALID = sorted((FIXTURES / "validator" / "invalid").glob("*.json"))
BACKPORT = sorted((FIXTURES / "backport").glob("*.json"))


def answer() -> dict[str, Any]:
    """The Encounter POST /fhir/Encounter answers with."""
    return mapping.as_encounter(
        encounter_id=str(uuid.uuid4()),
        revision=2,
        updated_at=datetime.now(UTC),
        contact_kind="crisis_team",
        status="did_not_attend",
        started_at=datetime(2026, 10, 1, 9, 0, tzinfo=UTC),
        ended_at=datetime(2026, 10, 1, 9, 30, tzinfo=UTC),
        source_org="RX1",
    )


def _without_profiles(raw: Any) -> Any:
    if isinstance(raw, dict):
        out = {k: _without_profiles(v) for k, v in raw.items() if k != "profile"}
        return {k: v for k, v in out.items() if not (k == "meta" and not v)}
    if isinstance(raw, list):
        return [_without_profiles(v) for v in raw]
    return raw


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, hapi.Verdict]]:
    """Each fixture's content and the reference validator's verdict on it (one JVM)."""
    tmp = tmp_path_factory.mktemp("fhir")
    contents: dict[str, Any] = {}
    for f in VALID + INVALID:
        contents[f"{f.parent.name}/{f.stem}"] = json.loads(f.read_text())
    for f in BACKPORT:
        contents[f"backport/{f.stem}"] = _without_profiles(json.loads(f.read_text()))
    contents["answer/encounter"] = answer()
    files = {}
    for name, raw in contents.items():
        path = tmp / (name.replace("/", "__") + ".json")
        path.write_text(json.dumps(raw))
        files[name] = path
    verdicts = hapi.validate(list(files.values()))
    return {name: (contents[name], verdicts[str(path)]) for name, path in files.items()}


def _overlap(ours: list[str], theirs: list[str]) -> bool:
    locations = [m.split(": ", 1)[0] for m in theirs]
    return any(o.startswith(t) or t.startswith(o) for o in ours for t in locations)


NAMES = (
    [f"valid/{f.stem}" for f in VALID]
    + [f"invalid/{f.stem}" for f in INVALID]
    + [f"backport/{f.stem}" for f in BACKPORT]
    + ["answer/encounter"]
)


def test_there_are_fixtures_of_each_kind() -> None:
    assert len(VALID) >= 5 and len(INVALID) >= 10 and len(BACKPORT) >= 5


@pytest.mark.parametrize("name", NAMES)
def test_our_verdict_is_the_reference_validators(
    cases: dict[str, tuple[Any, hapi.Verdict]], name: str
) -> None:
    raw, theirs = cases[name]
    ours = validation.problems(raw)
    expected_invalid = name.startswith("invalid/")
    assert bool(theirs.errors) == expected_invalid, (name, theirs.messages)
    assert bool(ours) == expected_invalid, (name, ours)
    if expected_invalid:
        paths = [p.path for p in ours]
        assert _overlap(paths, theirs.messages), (name, paths, theirs.messages)


def _route(raw: dict[str, Any]) -> str:
    if raw["resourceType"] == "Bundle":
        return "/fhir/subscription-notification" if raw["type"] == "history" else "/fhir"
    return f"/fhir/{raw['resourceType']}"


@pytest.mark.parametrize("fixture", VALID + INVALID, ids=lambda f: f"{f.parent.name}/{f.stem}")
async def test_the_api_takes_the_valid_and_refuses_the_invalid(
    integration_client, fhir_sender, cases, fixture: Path
) -> None:
    sender = await fhir_sender()
    name = f"{fixture.parent.name}/{fixture.stem}"
    raw, theirs = cases[name]
    route = _route(raw) if raw.get("type") != "wibble" else "/fhir"
    r = await integration_client.post(route, content=json.dumps(raw), headers=sender.headers)
    if fixture.parent.name == "valid":
        assert r.status_code in (200, 201), r.text
        if raw["resourceType"] == "Bundle":
            statuses = [e["response"]["status"] for e in r.json()["entry"]]
            assert all(s.startswith(("200", "201")) for s in statuses), statuses
    elif raw.get("type") == "batch":  # a batch answers each entry on its own
        assert r.status_code == 200, r.text
        [entry] = r.json()["entry"]
        assert entry["response"]["status"] == "422 Unprocessable Entity", entry
        paths = expressions(entry["response"]["outcome"])
        assert _overlap(paths, theirs.messages), (entry, theirs.messages)
    else:
        body = outcome(r, 422)
        assert _overlap(expressions(body), theirs.messages), (body, theirs.messages)
