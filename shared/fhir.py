"""What every FHIR face of Waymark shares: the media type, the NHS identifier systems, and the
one renderer that turns an error into an OperationOutcome (each service's app passes it as the
error renderer for its /fhir routes)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

FHIR_JSON = "application/fhir+json"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"

#: the error responses a FHIR route documents: an OperationOutcome in FHIR's media type
FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {FHIR_JSON: {}}}
    for s, d in [
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
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": e.get("message", ""),
                "expression": [".".join(e.get("location", []))],
            }
        )
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)
