"""What every FHIR face of Waymark shares: the media type, the NHS identifier systems, and the
one renderer that turns an error into an OperationOutcome (each service's app passes it as the
error renderer for its /fhir routes)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

FHIR_JSON = "application/fhir+json"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
#: the pseudonymous patient id Waymark's FHIR resources carry (never an NHS number or name)
PSEUDONYM_SYSTEM = "https://waymark.nhs.example/fhir/Id/patient-pseudonym"

#: the error responses a FHIR route documents: an OperationOutcome in FHIR's media type
FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {FHIR_JSON: {}}}
    for s, d in [
        (400, "Bad request: a body that is not JSON"),
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (422, "OperationOutcome"),
    ]
}


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A FHIR resource in FHIR's own media type."""
    return JSONResponse(resource, status_code=status, media_type=FHIR_JSON, headers=headers)


def patient_fhir_id(pseudonym: str) -> str:
    """The Patient resource id of a pseudonymous id: FHIR ids take letters, digits, '-' and
    '.', so pt_abc... is Patient/pt-abc... (a pseudonym holds one '_' and never a '-')."""
    return pseudonym.replace("_", "-")


def pseudonym_of(fhir_id: str) -> str:
    """The pseudonymous id a Patient resource id stands for (either spelling is taken)."""
    return fhir_id.replace("-", "_")


def minimal_patient(pseudonym: str) -> dict[str, Any]:
    """The Patient a reference to the person resolves to: the pseudonymous identifier only (no
    name, no NHS number, nothing else that identifies the person)."""
    return {
        "resourceType": "Patient",
        "id": patient_fhir_id(pseudonym),
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": pseudonym}],
    }


def patient_reference(pseudonym: str) -> dict[str, Any]:
    """A reference to the person the server answers (GET Patient/<id>, the minimal Patient),
    with the identifier too so a client that does not follow it still knows who."""
    return {
        "reference": f"Patient/{patient_fhir_id(pseudonym)}",
        "identifier": {"system": PSEUDONYM_SYSTEM, "value": pseudonym},
    }


def operation_outcome(status: int, title: str, detail: str, extra: dict[str, Any]) -> Response:
    code = {
        400: "invalid",
        401: "login",
        403: "forbidden",
        404: "not-found",
        409: "conflict",
        412: "conflict",
        422: "invalid",
        428: "required",
    }.get(status, "exception")
    issues = [{"severity": "error", "code": code, "diagnostics": detail}]
    for e in extra.get("errors", [])[:20]:
        issue: dict[str, Any] = {"severity": "error", "code": "invalid"}
        where, path = _fhirpath(list(e.get("location", [])))
        message = e.get("message", "")
        if path:
            issue["diagnostics"] = message
            issue["expression"] = [path]
        else:  # a query parameter or header is no element of a resource: name it in words
            issue["diagnostics"] = f"{where}: {message}" if where else message
        issues.append(issue)
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


#: the parts of a request that are not a resource: their errors have no FHIRPath
_REQUEST_PARTS = {
    "query": "query parameter",
    "header": "header",
    "path": "path",
    "cookie": "cookie",
}


def _fhirpath(location: list[Any]) -> tuple[str, str | None]:
    """An error's location as (words, FHIRPath): ['body', 'Bundle', 'entry', 0] is FHIRPath
    Bundle.entry[0] (a path from its resource type); ['query', '_count'] is no element of a
    resource (FHIRPath would not name it), so it is the words "query parameter _count"."""
    if location and location[0] in _REQUEST_PARTS:
        rest = ".".join(str(p) for p in location[1:])
        return f"{_REQUEST_PARTS[location[0]]} {rest}".strip(), None
    if location and location[0] == "body":
        location = location[1:]
    if not location or not str(location[0])[:1].isupper():
        # an element of a body whose resource type is unknown here
        return ".".join(str(p) for p in location), None
    path = str(location[0])
    for part in location[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return "", path
