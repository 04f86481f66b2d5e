"""What every FHIR base of Waymark serves the same way, so a partner's client finds its way
unaided: the discovery documents (the CapabilityStatement at /fhir/metadata and the SMART App
Launch configuration at /fhir/.well-known/smart-configuration, both public), search paging
(`_count` and `_offset`, Bundle links first/previous/self/next, `total`), URLs made from the
base that served the request (Bundle.entry.fullUrl, Location), the minimal Patient a reference
resolves to (shared/fhir.py builds it), and FHIR's media type in the OpenAPI document.

The building functions are pure (unit tested); `discovery_router` and `fhir_openapi` wire them
into a service's app."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from shared import oidc
from shared.errors import ValidationFailed
from shared.fhir import FHIR_JSON, fhir_response

FHIR_VERSION = "4.0.1"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SMART_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
#: the search results a page holds unless `_count` says otherwise, and at most
DEFAULT_COUNT = 50
MAX_COUNT = 200
#: the SMART App Launch 2.0 capabilities Waymark's issuer gives: a person's app signs in with
#: the authorization code and PKCE (public or confidential client), a system with client
#: credentials; scopes are v2 (`patient/ServiceRequest.rs` and the like)
SMART_CAPABILITIES = [
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "sso-openid-connect",
    "permission-v2",
]


# --- the CapabilityStatement -------------------------------------------------------------------


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # a FHIR search parameter type: token, reference, date, uri, string, number
    documentation: str = ""


@dataclass(frozen=True)
class Supported:
    """A resource type a base serves: the interactions it answers (read, vread, search-type,
    create, update) and the search parameters it understands."""

    type: str
    interactions: tuple[str, ...]
    search: tuple[SearchParam, ...] = ()
    documentation: str = ""
    #: FHIR's `versioning`: `versioned` when meta.versionId changes with each update
    versioning: str = "versioned"


@dataclass(frozen=True)
class Base:
    """One service's FHIR base as the CapabilityStatement describes it."""

    name: str  # a computer-friendly name, e.g. WaymarkReferrals
    title: str
    description: str
    resources: tuple[Supported, ...]
    #: whole-system interactions (POST /fhir of a transaction or batch Bundle)
    system: tuple[str, ...] = ()
    date: str = "2026-12-03"
    formats: tuple[str, ...] = field(default=("json",))


#: the paging parameters every search answers
PAGING = (
    SearchParam("_count", "number", f"per page: 1-{MAX_COUNT}, {DEFAULT_COUNT} unless set"),
    SearchParam("_offset", "number", "how many matches to skip; follow Bundle.link next instead"),
)


def capability_statement(
    base: Base, *, url: str, oauth: dict[str, Any] | None, software: str = "Waymark"
) -> dict[str, Any]:
    """The base's CapabilityStatement (R4, kind instance) at `url` (the served base). `oauth` is
    the issuer's discovery document: the SMART security extension names its endpoints; without
    it (the issuer unreachable) the statement still says SMART-on-FHIR but names none."""
    security: dict[str, Any] = {
        "cors": False,
        "service": [
            {
                "coding": [
                    {"system": SMART_SERVICE, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}
                ],
                "text": "OAuth2 bearer tokens from the ICS's OpenID provider (SMART App Launch)",
            }
        ],
        "description": "Every request but discovery carries a bearer token from the OpenID "
        f"provider; its endpoints are in {url}/.well-known/smart-configuration.",
    }
    if oauth:
        uris = [
            {"url": "authorize", "valueUri": oauth["authorization_endpoint"]},
            {"url": "token", "valueUri": oauth["token_endpoint"]},
        ]
        if oauth.get("registration_endpoint"):
            uris.append({"url": "register", "valueUri": oauth["registration_endpoint"]})
        security["extension"] = [{"url": SMART_OAUTH_URIS, "extension": uris}]
    resources = []
    for r in base.resources:
        entry: dict[str, Any] = {
            "type": r.type,
            "interaction": [{"code": i} for i in r.interactions],
            "versioning": r.versioning,
        }
        if r.documentation:
            entry["documentation"] = r.documentation
        if "create" in r.interactions or "update" in r.interactions:
            entry["conditionalCreate"] = False
            entry["conditionalUpdate"] = False
        if "search-type" in r.interactions:
            entry["searchParam"] = [_param(p) for p in (*r.search, *PAGING)]
        resources.append(entry)
    rest: dict[str, Any] = {"mode": "server", "security": security, "resource": resources}
    if base.system:
        rest["interaction"] = [{"code": i} for i in base.system]
    return {
        "resourceType": "CapabilityStatement",
        "url": f"{url}/metadata",
        "name": base.name,
        "title": base.title,
        "status": "active",
        "experimental": False,
        "date": base.date,
        "publisher": "Waymark",
        "description": base.description,
        "kind": "instance",
        "software": {"name": software},
        "implementation": {"description": base.title, "url": url},
        "fhirVersion": FHIR_VERSION,
        "format": list(base.formats),
        "rest": [rest],
    }


def _param(p: SearchParam) -> dict[str, Any]:
    out = {"name": p.name, "type": p.type}
    if p.documentation:
        out["documentation"] = p.documentation
    return out


def smart_configuration(discovery: dict[str, Any]) -> dict[str, Any]:
    """SMART App Launch 2.0's /.well-known/smart-configuration, from the OpenID provider's own
    discovery document (the same issuer, endpoints and keys; never a second source of truth)."""
    grants = discovery.get("grant_types_supported") or ["authorization_code"]
    scopes = discovery.get("scopes_supported") or ["openid"]
    doc: dict[str, Any] = {
        "issuer": discovery["issuer"],
        "jwks_uri": discovery["jwks_uri"],
        "authorization_endpoint": discovery["authorization_endpoint"],
        "token_endpoint": discovery["token_endpoint"],
        "grant_types_supported": [
            g for g in grants if g in ("authorization_code", "client_credentials")
        ],
        "scopes_supported": list(scopes),
        "response_types_supported": ["code"],
        "capabilities": SMART_CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
    }
    for key in (
        "token_endpoint_auth_methods_supported",
        "registration_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "userinfo_endpoint",
    ):
        if discovery.get(key):
            doc[key] = discovery[key]
    return doc


# --- paging ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    offset: int
    count: int


def page_of(count: str | None, offset: str | None) -> Page:
    """The page a search asks for (`_count`, `_offset`); a bad value is a 400 naming it (FHIR
    search parameters are not FHIRPath: the OperationOutcome says which in diagnostics)."""

    def number(name: str, raw: str | None, default: int, low: int, high: int) -> int:
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValidationFailed(
                f"the search parameter {name} must be a whole number from {low} to {high}, "
                f"not {raw[:40]!r}"
            )
        return int(raw)

    return Page(
        offset=number("_offset", offset, 0, 0, 10_000_000),
        count=number("_count", count, DEFAULT_COUNT, 1, MAX_COUNT),
    )


def page_links(
    url: str, params: Sequence[tuple[str, str]], page: Page, total: int
) -> list[dict[str, str]]:
    """Bundle.link for one page of a search at `url` (absolute, no query) with its own search
    `params` (the paging ones are replaced): self, first, previous (unless first), next (while
    matches remain). Following next from the first page visits every match once."""
    kept = [(k, v) for k, v in params if k not in ("_count", "_offset")]

    def at(offset: int) -> str:
        return f"{url}?{urlencode([*kept, ('_count', str(page.count)), ('_offset', str(offset))])}"

    links = [{"relation": "self", "url": at(page.offset)}, {"relation": "first", "url": at(0)}]
    if page.offset > 0:
        links.append({"relation": "previous", "url": at(max(0, page.offset - page.count))})
    if page.offset + page.count < total:
        links.append({"relation": "next", "url": at(page.offset + page.count)})
    return links


def searchset(
    base: str,
    resources: Sequence[dict[str, Any]],
    *,
    total: int,
    links: list[dict[str, str]],
) -> dict[str, Any]:
    """A search's Bundle: each entry's fullUrl under `base` (the base that served it)."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{res['resourceType']}/{res['id']}",
                "resource": res,
                "search": {"mode": "match"},
            }
            for res in resources
        ],
    }


# --- URLs of the base that served the request --------------------------------------------------


def served_base(request: Request) -> str:
    """The FHIR base the caller used: the request's own scheme, host and port (as the server
    saw them; the apps trust no X-Forwarded-* headers of their own) and /fhir."""
    return str(request.base_url).rstrip("/") + "/fhir"


def location(request: Request, resource: dict[str, Any]) -> str:
    """Where a created or updated resource is, absolute, at its version (FHIR's Location)."""
    rid, version = resource["id"], resource["meta"]["versionId"]
    return f"{served_base(request)}/{resource['resourceType']}/{rid}/_history/{version}"


def search_bundle(
    request: Request, resources: Sequence[dict[str, Any]], *, total: int, page: Page
) -> dict[str, Any]:
    """The searchset for this request's page, with its links under the served base."""
    url = f"{served_base(request)}{request.url.path.removeprefix('/fhir')}"
    links = page_links(url, list(request.query_params.multi_items()), page, total)
    return searchset(served_base(request), resources, total=total, links=links)


# --- wiring ----------------------------------------------------------------------------------


def discovery_router(base: Base) -> APIRouter:
    """GET /fhir/metadata and /fhir/.well-known/smart-configuration for this base: public (no
    token: a client reads them before it has one), built from the configured issuer."""
    router = APIRouter()

    @router.get("/fhir/metadata", tags=["fhir"], response_class=Response)
    async def fhir_metadata(request: Request) -> Response:
        """The CapabilityStatement: what this base serves, and how to get a token for it."""
        try:
            discovery: dict[str, Any] | None = await oidc.metadata(request.app.state.settings)
        except oidc.IssuerUnavailable:
            discovery = None  # still say what is served; the SMART endpoints when it is back
        return fhir_response(
            capability_statement(base, url=served_base(request), oauth=discovery),
            headers={"Cache-Control": "public, max-age=300"},
        )

    @router.get("/fhir/.well-known/smart-configuration", tags=["fhir"], response_class=Response)
    async def smart_config(request: Request) -> Response:
        """SMART App Launch configuration: the OpenID provider's endpoints and what it allows."""
        doc = smart_configuration(await oidc.metadata(request.app.state.settings))
        # SMART serves this document as plain JSON (it is not a FHIR resource)
        return JSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})

    return router


def fhir_openapi(app: FastAPI) -> None:
    """Document what the FHIR routes really send and take: `application/fhir+json` (the
    SMART configuration, plain JSON, excepted), so a client generated from the OpenAPI sends
    and expects FHIR's media type."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = original()
        for path, ops in doc.get("paths", {}).items():
            if not path.startswith("/fhir") or path.endswith("smart-configuration"):
                continue
            for op in ops.values():
                for status, response in op.get("responses", {}).items():
                    content = response.get("content")
                    if content:  # FastAPI's application/json (a schema, or none)
                        response["content"] = {FHIR_JSON: next(iter(content.values()))}
                    elif status.startswith("2") and status != "204":
                        response["content"] = {FHIR_JSON: {}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
