"""What the security tests share: every route of an app (the OpenAPI's operations and the
routes outside it), plausible values for path parameters, and problem+json checks."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount

from shared.errors import PROBLEM_BASE, PROBLEM_JSON

FHIR_JSON = "application/fhir+json"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Operation:
    """One method on one route of one service's app."""

    service: str
    method: str
    path: str  # the template, as the router has it (`{alert_id:path}` and all)
    in_openapi: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def url(self, values: dict[str, str] | None = None) -> str:
        """The path with each parameter filled in (`values` first, then a plausible value)."""

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            return (values or {}).get(name) or plausible(self.service, name)

        return re.sub(r"{(\w+)(?::\w+)?}", fill, self.path)


def _routes(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, set[str]]]:
    """Each route's path and methods; a mounted app's routes (the dashboard's) under the
    mount's path, as a request reaches them."""
    out: list[tuple[str, set[str]]] = []
    for route in routes:
        if isinstance(route, Mount):
            out += _routes(route.routes, prefix + route.path)
            continue
        for ctx in iter_route_contexts([route]):
            out.append((prefix + ctx.path, set(ctx.methods or ())))
    return out


def operations(service: str, app: FastAPI) -> list[Operation]:
    """Every method of every route of `app`: its OpenAPI operations, then the routes the
    OpenAPI leaves out (FastAPI's own docs, the dashboard's pages, a mounted app of its own)."""
    spec = app.openapi()
    in_spec = {
        (m.upper(), p)
        for p, item in spec["paths"].items()
        for m in item
        if m.upper() in HTTP_METHODS
    }
    found: dict[tuple[str, str], Operation] = {}
    for path, methods in _routes(app.routes):
        for method in sorted(methods):
            if method not in HTTP_METHODS:
                continue  # HEAD: Starlette's twin of each GET
            template = re.sub(r":\w+}", "}", path)
            found[(method, path)] = Operation(service, method, path, (method, template) in in_spec)
    documented = {(o.method, re.sub(r":\w+}", "}", o.path)) for o in found.values() if o.in_openapi}
    # every documented operation is a route we call (nothing in the OpenAPI is missed)
    assert documented == in_spec, in_spec - documented
    return sorted(found.values(), key=lambda o: (o.path, o.method))


_HEX = uuid.uuid4().hex

#: a value for each path parameter any service has, shaped as the route expects, so the
#: request reaches the route (and its authentication) rather than the router's 404
PATH_VALUES: dict[str, str] = {
    "referral_id": str(uuid.uuid4()),
    "plan_id": str(uuid.uuid4()),
    "assessment_id": str(uuid.uuid4()),
    "version": "1",
    "patient_id": f"pt_{_HEX[:24]}",
    "alert_id": f"pt_{_HEX[:24]}:stalled.not_triaged:{_HEX[:8]}",
    "subscription_id": f"whs_{_HEX}",
    "client_key": f"pcl_{_HEX}",
    "delivery_id": f"msg_{_HEX}",
    "message_id": f"msg_{_HEX}",
    "item_id": f"inb_{_HEX}",
    "service_id": f"svc-{_HEX[:12]}",
    "sal_id": str(uuid.uuid4()),
    "org_code": "ORG-SEC1",
    "postcode": "WY1 0BG",
    "questionnaire_id": "phq-9",
    "goal_id": f"{uuid.uuid4().hex}.g1",
    "taxonomy_id": "persistent_pain",
    "term_id": "persistent_pain",
    "name": "dashboard.css",
    "rest": "nowhere-in-particular",
    "source_system": "ers-worklist",
    "source_ref": "000000123456",
    "source_id": f"src-{_HEX[:12]}",
    "letter_id": str(uuid.uuid4()),
    "encounter_id": str(uuid.uuid4()),
}
#: parameters whose value depends on the service (an enum of that service's)
SERVICE_PATH_VALUES: dict[tuple[str, str], str] = {
    ("referrals", "action"): "accept",
    ("notifications", "action"): "acknowledge",
}


def plausible(service: str, name: str) -> str:
    value = SERVICE_PATH_VALUES.get((service, name)) or PATH_VALUES.get(name)
    assert value is not None, (
        f"no plausible value for the path parameter {name!r} of "
        f"{service}: add one to tests/security/support.py"
    )
    return value


def media_type(r: httpx.Response) -> str:
    return r.headers.get("content-type", "").split(";")[0].strip()


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json (RFC 9457) document of an error response, checked."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert media_type(r) == PROBLEM_JSON, (r.headers.get("content-type"), r.text[:300])
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"].startswith(PROBLEM_BASE), body
    assert body["title"] and body["detail"], body
    return body


def error_text(r: httpx.Response) -> str:
    """What an error response tells the caller: problem+json's title and detail, or a FHIR
    OperationOutcome's diagnostics."""
    body = r.json()
    if body.get("resourceType") == "OperationOutcome":
        return " ".join(i.get("diagnostics", "") for i in body["issue"])
    return f"{body.get('title', '')}: {body.get('detail', '')}"
