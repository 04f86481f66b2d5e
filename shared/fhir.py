"""What every FHIR face of Waymark shares: the media type, the NHS identifier systems, and the
one renderer that turns an error into an OperationOutcome (each service's app passes it as the
error renderer for its /fhir routes)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

FHIR_JSON = "application/fhir+json"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


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
