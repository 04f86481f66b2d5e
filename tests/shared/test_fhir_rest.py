"""The FHIR discovery and paging every base shares (shared/fhir_rest.py), as pure functions:
the CapabilityStatement and SMART configuration built from an issuer's discovery document,
search paging links that visit every match once, and OperationOutcome expressions that are
FHIRPath. Each built document is also read by the `fhir.resources` R4B models."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from shared.errors import ValidationFailed
from shared.fhir import minimal_patient, operation_outcome, patient_reference, pseudonym_of
from shared.fhir_rest import (
    SMART_OAUTH_URIS,
    Base,
    Page,
    SearchParam,
    Supported,
    capability_statement,
    page_links,
    page_of,
    searchset,
    smart_configuration,
)

DISCOVERY = {
    "issuer": "https://login.ics.example",
    "authorization_endpoint": "https://login.ics.example/auth",
    "token_endpoint": "https://login.ics.example/token",
    "jwks_uri": "https://login.ics.example/jwks",
    "grant_types_supported": ["implicit", "authorization_code", "client_credentials"],
    "scopes_supported": ["openid", "offline_access"],
    "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
    "code_challenge_methods_supported": ["S256"],
}

BASE = Base(
    name="WaymarkTest",
    title="Waymark test base",
    description="A base for the tests",
    resources=(
        Supported(
            "ServiceRequest",
            ("read", "search-type", "create"),
            (SearchParam("patient", "reference"), SearchParam("status", "token")),
        ),
        Supported("Task", ("read", "update")),
    ),
)
URL = "https://referrals.ics.example/fhir"


class TestCapabilityStatement:
    def test_is_an_active_r4_instance_statement_a_client_can_read(self) -> None:
        cs = capability_statement(BASE, url=URL, oauth=DISCOVERY)
        CapabilityStatement.model_validate(cs)
        assert (cs["kind"], cs["status"], cs["fhirVersion"]) == ("instance", "active", "4.0.1")
        assert cs["format"] == ["json"] and cs["date"]
        assert cs["implementation"]["url"] == URL

    def test_lists_each_resource_with_its_interactions_and_search_params(self) -> None:
        [rest] = capability_statement(BASE, url=URL, oauth=DISCOVERY)["rest"]
        by_type = {r["type"]: r for r in rest["resource"]}
        assert [i["code"] for i in by_type["ServiceRequest"]["interaction"]] == [
            "read",
            "search-type",
            "create",
        ]
        names = [p["name"] for p in by_type["ServiceRequest"]["searchParam"]]
        assert names == ["patient", "status", "_count", "_offset"]
        assert "searchParam" not in by_type["Task"]  # no search: no parameters claimed

    def test_security_names_the_issuers_endpoints_as_smart_says(self) -> None:
        security = capability_statement(BASE, url=URL, oauth=DISCOVERY)["rest"][0]["security"]
        assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
        [ext] = security["extension"]
        assert ext["url"] == SMART_OAUTH_URIS
        uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
        assert uris == {
            "authorize": DISCOVERY["authorization_endpoint"],
            "token": DISCOVERY["token_endpoint"],
        }

    def test_without_the_issuer_it_still_says_what_is_served(self) -> None:
        cs = capability_statement(BASE, url=URL, oauth=None)
        CapabilityStatement.model_validate(cs)
        assert "extension" not in cs["rest"][0]["security"]


class TestSmartConfiguration:
    def test_is_the_issuers_own_endpoints_with_pkce_s256(self) -> None:
        doc = smart_configuration(DISCOVERY)
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            assert doc[key] == DISCOVERY[key]
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert "launch-standalone" in doc["capabilities"]
        assert "permission-v2" in doc["capabilities"]

    def test_offers_only_the_grants_smart_knows(self) -> None:
        assert smart_configuration(DISCOVERY)["grant_types_supported"] == [
            "authorization_code",
            "client_credentials",
        ]

    def test_keeps_the_issuers_client_authentication_methods(self) -> None:
        doc = smart_configuration(DISCOVERY)
        assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "none"]


def _offset(url: str) -> int:
    return int(dict(parse_qsl(urlsplit(url).query))["_offset"])


class TestPaging:
    @pytest.mark.parametrize(
        ("count", "offset", "expected"),
        [(None, None, Page(0, 50)), ("2", None, Page(0, 2)), ("10", "30", Page(30, 10))],
    )
    def test_reads_count_and_offset(self, count: str, offset: str, expected: Page) -> None:
        assert page_of(count, offset) == expected

    @pytest.mark.parametrize(
        ("count", "offset"),
        [("0", None), ("201", None), ("-1", None), ("x", None), (None, "-3"), (None, "1.5")],
    )
    def test_refuses_a_bad_page_naming_the_parameter(self, count: str, offset: str) -> None:
        with pytest.raises(ValidationFailed, match="_count" if count else "_offset"):
            page_of(count, offset)

    @pytest.mark.parametrize("total", [0, 1, 2, 4, 5, 9, 10, 11])
    @pytest.mark.parametrize("count", [1, 2, 3, 5])
    def test_following_next_visits_every_match_once(self, total: int, count: int) -> None:
        seen: list[int] = []
        page = Page(0, count)
        pages = 0
        while True:
            seen.extend(range(page.offset, min(page.offset + page.count, total)))
            links = {x["relation"]: x["url"] for x in page_links(URL + "/X", [], page, total)}
            pages += 1
            if "next" not in links:
                break
            page = Page(_offset(links["next"]), count)
        assert seen == list(range(total))
        assert pages == max(1, -(-total // count))

    def test_self_first_previous_and_next_keep_the_search(self) -> None:
        params = [("status", "active"), ("_count", "2"), ("_offset", "2")]
        links = page_links(URL + "/ServiceRequest", params, Page(2, 2), total=5)
        by = {x["relation"]: x["url"] for x in links}
        assert set(by) == {"self", "first", "previous", "next"}
        assert {k: _offset(v) for k, v in by.items()} == {
            "self": 2,
            "first": 0,
            "previous": 0,
            "next": 4,
        }
        for url in by.values():
            assert url.startswith(URL + "/ServiceRequest?status=active&_count=2&_offset=")

    def test_the_last_page_has_no_next_and_the_first_no_previous(self) -> None:
        first = {x["relation"] for x in page_links(URL, [], Page(0, 2), total=2)}
        assert first == {"self", "first"}

    def test_the_bundle_has_total_links_and_full_urls_under_the_served_base(self) -> None:
        res = [{"resourceType": "Patient", "id": "p1"}]
        links = page_links(URL + "/Patient", [], Page(0, 1), total=3)
        bundle = searchset(URL, res, total=3, links=links)
        Bundle.model_validate(bundle)
        assert bundle["total"] == 3
        assert bundle["entry"][0]["fullUrl"] == f"{URL}/Patient/p1"
        assert [x["relation"] for x in bundle["link"]] == ["self", "first", "next"]


class TestPatient:
    def test_the_minimal_patient_is_the_pseudonym_and_nothing_else(self) -> None:
        p = minimal_patient("pt_abc234")
        Patient.model_validate(p)  # a FHIR id: no '_'
        assert set(p) == {"resourceType", "id", "identifier"}
        assert p["id"] == "pt-abc234"
        assert [i["value"] for i in p["identifier"]] == ["pt_abc234"]

    def test_a_reference_can_be_followed_and_still_names_the_person(self) -> None:
        ref = patient_reference("pt_abc234")
        assert ref["reference"] == "Patient/pt-abc234"
        assert pseudonym_of(ref["reference"].removeprefix("Patient/")) == "pt_abc234"
        assert pseudonym_of("pt_abc234") == "pt_abc234"
        assert ref["identifier"]["value"] == "pt_abc234"


def _outcome(errors: list[dict[str, Any]]) -> dict[str, Any]:
    import json

    response = operation_outcome(422, "Invalid", "bad", {"errors": errors})
    body = json.loads(response.body)
    OperationOutcome.model_validate(body)
    return body


class TestOperationOutcomeExpressions:
    def test_a_query_parameter_is_named_in_diagnostics_not_as_fhirpath(self) -> None:
        body = _outcome([{"location": ["query", "_count"], "message": "too big"}])
        issue = body["issue"][1]
        assert "expression" not in issue
        assert "_count" in issue["diagnostics"]

    def test_a_body_field_without_its_resource_is_named_in_diagnostics(self) -> None:
        body = _outcome([{"location": ["body", "subject"], "message": "missing"}])
        issue = body["issue"][1]
        assert "expression" not in issue
        assert "subject" in issue["diagnostics"] and "missing" in issue["diagnostics"]

    @pytest.mark.parametrize(
        ("location", "fhirpath"),
        [
            (["ServiceRequest", "subject"], "ServiceRequest.subject"),
            (["body", "Bundle", "entry", 0, "resource"], "Bundle.entry[0].resource"),
            (["Task", "input", 2, "valueString"], "Task.input[2].valueString"),
        ],
    )
    def test_an_element_of_a_resource_is_a_fhirpath_expression(
        self, location: list[Any], fhirpath: str
    ) -> None:
        body = _outcome([{"location": location, "message": "bad"}])
        assert body["issue"][1]["expression"] == [fhirpath]

    @pytest.mark.parametrize("where", ["header", "path", "cookie"])
    def test_no_expression_starts_with_a_request_part(self, where: str) -> None:
        body = _outcome([{"location": [where, "x"], "message": "bad"}])
        for issue in body["issue"]:
            for e in issue.get("expression", []):
                assert not e.startswith(f"{where}.")
