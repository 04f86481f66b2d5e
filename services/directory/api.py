"""The directory service's HTTP API (routes only: parse, authorise, call a handler, render).

Two faces on one app, `app` below:
- Waymark's own API at the root: organisations and services (create, update, publish,
  withdraw) here; search, postcodes and vocabularies in `api_search.py`.
- Open Referral UK (HSDS 3) in `oruk/api.py`: the importer (`/imports/oruk`) and the read API
  under `/oruk` (`/oruk/services`, `/oruk/services/{id}`, `/oruk/service_at_locations`,
  `/oruk/taxonomies`, `/oruk/taxonomy_terms`): an ORUK consumer is pointed at `<directory>/oruk`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.directory import api_identifiers, api_search, commands, queries
from services.directory.oruk import api as oruk_api
from services.directory.params import (
    ERRORS,
    DirectoryReader,
    IdempotencyKey,
    IfMatch,
    OrgCodePath,
    ServiceId,
    settings_of,
)
from services.directory.schemas import (
    OrganizationIn,
    OrganizationOut,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
    WithdrawIn,
)
from shared.auth import CurrentPrincipal, Principal
from shared.errors import PreconditionFailed
from shared.settings import Settings
from shared.web import Outcome, SessionDep, client_ip, create_app, once_per_key, weak_etag

router = APIRouter()


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r'\s*(?:W/)?"([0-9]{1,9})"\s*', value)
    if m is None:
        raise PreconditionFailed('If-Match must be an ETag this API gave you, such as W/"3"')
    return int(m.group(1))


async def _service_response(
    session: SessionDep, principal: Principal, service_id: str, status: int = 200
) -> tuple[dict[str, Any], dict[str, str]]:
    service, org, locations = await queries.get_service(
        session=session, principal=principal, service_id=service_id
    )
    out = queries.service_out(service, org=org, locations=locations).model_dump(mode="json")
    return out, {"ETag": weak_etag(service.version), "Location": f"/services/{service.id}"}


# --- organisations ----------------------------------------------------------------------------


def _org_out(org: Any) -> dict[str, Any]:
    return OrganizationOut.model_validate(org, from_attributes=True).model_dump(mode="json")


@router.put(
    "/organizations/{org_code}",
    response_model=OrganizationOut,
    responses=ERRORS,
    tags=["organisations"],
)
async def put_organization(
    org_code: OrgCodePath,
    body: OrganizationIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """Register or update a provider organisation (its staff, or an admin of its ICS)."""
    org, created = await commands.register_organization(
        session=session,
        principal=principal,
        org_code=org_code,
        cmd=body,
        client_ip=client_ip(request),
    )
    await session.flush()
    return JSONResponse(
        _org_out(org), status_code=201 if created else 200, headers={"ETag": weak_etag(org.version)}
    )


@router.get(
    "/organizations/{org_code}",
    response_model=OrganizationOut,
    responses=ERRORS,
    tags=["organisations"],
)
async def get_organization(
    org_code: OrgCodePath, session: SessionDep, principal: DirectoryReader
) -> Response:
    """A provider organisation."""
    org = await queries.get_organization(session=session, org_code=org_code)
    return JSONResponse(_org_out(org), headers={"ETag": weak_etag(org.version)})


# --- services ---------------------------------------------------------------------------------


@router.post(
    "/services", status_code=201, response_model=ServiceOut, responses=ERRORS, tags=["services"]
)
async def create_service(
    body: ServiceCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create a service of your organisation, as a draft (publish it to list it)."""

    async def create() -> Outcome:
        service = await commands.create_service(
            session=session, principal=principal, cmd=body, client_ip=client_ip(request)
        )
        await session.flush()
        out, headers = await _service_response(session, principal, service.id)
        return Outcome(out, 201, headers)

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        body.model_dump(mode="json", exclude_unset=True),
        create,
    )


@router.get(
    "/services/{service_id}", response_model=ServiceOut, responses=ERRORS, tags=["services"]
)
async def get_service(
    service_id: ServiceId, session: SessionDep, principal: DirectoryReader
) -> Response:
    """One service in Waymark's shape (drafts only to those who manage them)."""
    out, headers = await _service_response(session, principal, service_id)
    return JSONResponse(out, headers={"ETag": headers["ETag"]})


@router.patch(
    "/services/{service_id}", response_model=ServiceOut, responses=ERRORS, tags=["services"]
)
async def update_service(
    service_id: ServiceId,
    body: ServiceUpdate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    """Change a service; lists you send replace the lists it had. Send If-Match to be sure
    nobody changed it since you read it."""
    service = await commands.update_service(
        session=session,
        principal=principal,
        service_id=service_id,
        cmd=body,
        settings=settings_of(request),
        if_match=_if_match(if_match),
        client_ip=client_ip(request),
    )
    await session.flush()
    out, headers = await _service_response(session, principal, service.id)
    return JSONResponse(out, headers={"ETag": headers["ETag"]})


async def _lifecycle_command(
    request: Request,
    session: SessionDep,
    principal: Principal,
    service_id: str,
    idempotency_key: str | None,
    body: Any,
    run: Any,
) -> Response:

    async def act() -> Outcome:
        service = await run()
        await session.flush()
        out, headers = await _service_response(session, principal, service.id)
        return Outcome(out, 200, {"ETag": headers["ETag"]})

    return await once_per_key(
        session, principal, idempotency_key, {"path": request.url.path, "body": body}, act
    )


@router.post(
    "/services/{service_id}/publish", response_model=ServiceOut, responses=ERRORS, tags=["services"]
)
async def publish_service(
    service_id: ServiceId,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """List the service in the directory (publishes `service.published`)."""
    version = _if_match(if_match)
    return await _lifecycle_command(
        request,
        session,
        principal,
        service_id,
        idempotency_key,
        None,
        lambda: commands.publish_service(
            session=session,
            principal=principal,
            service_id=service_id,
            settings=settings_of(request),
            if_match=version,
            client_ip=client_ip(request),
        ),
    )


@router.post(
    "/services/{service_id}/withdraw",
    response_model=ServiceOut,
    responses=ERRORS,
    tags=["services"],
)
async def withdraw_service(
    service_id: ServiceId,
    body: WithdrawIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Take the service out of the directory (publishes `service.withdrawn`)."""
    version = _if_match(if_match)
    return await _lifecycle_command(
        request,
        session,
        principal,
        service_id,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda: commands.withdraw_service(
            session=session,
            principal=principal,
            service_id=service_id,
            cmd=body,
            settings=settings_of(request),
            if_match=version,
            client_ip=client_ip(request),
        ),
    )


# --- the app ----------------------------------------------------------------------------------


#: an ORUK import page may hold 500 fully nested services of a few KiB each (~3.6 MB for the
#: richest records the tests import), more than the default `max_body_bytes` (1 MiB)
ORUK_IMPORT_MAX_BYTES = 8 * 1024 * 1024


def build_app(settings: Settings | None = None) -> FastAPI:
    """A directory app. The module-level `app` is the one uvicorn serves; tests may build
    another (each app keeps its own engine in its lifespan)."""
    new = create_app(
        "directory",
        title="Waymark directory",
        description="The community service directory (Open Referral UK shaped): "
        "search that finds the right service near the person.",
        settings=settings,
        large_bodies={"/imports/oruk": ORUK_IMPORT_MAX_BYTES},
    )
    # in this order the OpenAPI document lists the paths as it always has
    new.include_router(router)
    new.include_router(oruk_api.imports)
    new.include_router(api_search.router)
    new.include_router(oruk_api.router)
    new.include_router(api_identifiers.router)
    return new


app = build_app()
