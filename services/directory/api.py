"""The directory service's HTTP API (routes only: parse, authorise, call a handler, render).

Two faces on one app:
- Waymark's own API at the root: organisations, services (create, update, publish, withdraw),
  search, the ORUK importer, postcodes, vocabularies.
- The Open Referral UK (HSDS 3) read API under `/oruk` (`/oruk/services`,
  `/oruk/services/{id}`, `/oruk/service_at_locations`, `/oruk/taxonomies`,
  `/oruk/taxonomy_terms`): an ORUK consumer is pointed at `<directory>/oruk`.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.directory import domain, handlers
from services.directory.domain import (
    Category,
    CommunicationSupport,
    Condition,
    DeliveryMode,
)
from services.directory.oruk import mapping, taxonomies
from services.directory.oruk.schemas import (
    ImportReport,
    ImportRequest,
    OrukApiInfo,
    OrukService,
    OrukServiceAtLocationPage,
    OrukServicePage,
    OrukTaxonomy,
    OrukTaxonomyPage,
    OrukTaxonomyTerm,
    OrukTaxonomyTermPage,
    Page,
)
from services.directory.repository import DirectoryRepository
from services.directory.schemas import (
    OrganizationIn,
    OrganizationOut,
    PostcodeOut,
    SearchPage,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
    Vocabularies,
    VocabularyTerm,
    WithdrawIn,
)
from services.directory.search import (
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_RADIUS_KM,
    MIN_RADIUS_KM,
    SortOrder,
    build_search,
    check_page_in_range,
)
from shared.auth import CurrentPrincipal, Principal
from shared.errors import NotFound, PreconditionFailed, ValidationFailed
from shared.settings import Settings
from shared.web import (
    IDEMPOTENCY_HEADER,
    Outcome,
    QueryDateTime,
    SessionDep,
    client_ip,
    create_app,
    once_per_key,
    weak_etag,
)

PROBLEM = {"model": None, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, **PROBLEM}
    for s, d in [
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Conflict"),
        (412, "Precondition failed"),
        (422, "Invalid request"),
    ]
}

ServiceId = Annotated[str, Path(pattern=domain.RECORD_ID, max_length=64)]
OrgCodePath = Annotated[str, Path(pattern=domain.ORG_CODE)]
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='the ETag you read, e.g. W/"3"')
]

router = APIRouter()
oruk_router = APIRouter(prefix="/oruk", tags=["open referral uk"])


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r'\s*(?:W/)?"([0-9]{1,9})"\s*', value)
    if m is None:
        raise PreconditionFailed('If-Match must be an ETag this API gave you, such as W/"3"')
    return int(m.group(1))


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _service_response(
    session: SessionDep, principal: Principal, service_id: str, status: int = 200
) -> tuple[dict[str, Any], dict[str, str]]:
    service, org, locations = await handlers.get_service(
        session=session, principal=principal, service_id=service_id
    )
    out = mapping.service_out(service, org=org, locations=locations).model_dump(mode="json")
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
    org, created = await handlers.register_organization(
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
    org_code: OrgCodePath, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A provider organisation."""
    org = await handlers.get_organization(session=session, org_code=org_code)
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
        service = await handlers.create_service(
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
    service_id: ServiceId, session: SessionDep, principal: CurrentPrincipal
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
    service = await handlers.update_service(
        session=session,
        principal=principal,
        service_id=service_id,
        cmd=body,
        settings=_settings(request),
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
        lambda: handlers.publish_service(
            session=session,
            principal=principal,
            service_id=service_id,
            settings=_settings(request),
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
        lambda: handlers.withdraw_service(
            session=session,
            principal=principal,
            service_id=service_id,
            cmd=body,
            settings=_settings(request),
            if_match=version,
            client_ip=client_ip(request),
        ),
    )


# --- search -----------------------------------------------------------------------------------

SEARCH_PARAMS = frozenset(
    {
        "q",
        "condition",
        "category",
        "delivery_mode",
        "communication_support",
        "org_code",
        "self_referral",
        "free",
        "open_day",
        "open_at",
        "age",
        "postcode",
        "latitude",
        "longitude",
        "radius_km",
        "include_remote",
        "sort",
        "page",
        "page_size",
    }
)


def _known_params(request: Request) -> None:
    unknown = sorted(set(request.query_params) - SEARCH_PARAMS)
    if unknown:
        # a misspelt filter silently ignored would return the wrong services
        raise ValidationFailed(
            f"unknown search parameter(s): {', '.join(unknown)[:200]}; "
            f"known: {', '.join(sorted(SEARCH_PARAMS))}"
        )


@router.get(
    "/services",
    response_model=SearchPage,
    responses=ERRORS,
    tags=["search"],
    dependencies=[Depends(_known_params)],
)
async def search_services(
    session: SessionDep,
    principal: CurrentPrincipal,
    q: Annotated[
        str | None,
        Query(max_length=MAX_QUERY_CHARS, description="free text, ranked by relevance"),
    ] = None,
    condition: Annotated[
        list[Condition] | None, Query(description="conditions the service must serve (all of them)")
    ] = None,
    category: Annotated[list[Category] | None, Query(description="any of these")] = None,
    delivery_mode: Annotated[list[DeliveryMode] | None, Query(description="any of these")] = None,
    communication_support: Annotated[
        list[CommunicationSupport] | None, Query(description="all of these")
    ] = None,
    org_code: Annotated[
        list[str] | None,
        Query(description="provider organisation codes (any of these)", max_length=50),
    ] = None,
    self_referral: bool | None = None,
    free: Annotated[bool | None, Query(description="free of charge")] = None,
    open_day: Annotated[
        domain.Weekday | None, Query(description="open on this day (MO..SU)")
    ] = None,
    open_at: Annotated[
        time | None, Query(description="and open at this UK local time (needs open_day)")
    ] = None,
    age: Annotated[int | None, Query(ge=0, le=130)] = None,
    postcode: Annotated[
        str | None, Query(max_length=12, description="search near this UK postcode")
    ] = None,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(ge=MIN_RADIUS_KM, le=MAX_RADIUS_KM)] = None,
    include_remote: Annotated[
        bool,
        Query(
            description="near a place, also list phone/video services without a location in range"
        ),
    ] = False,
    sort: SortOrder | None = None,
    page: Annotated[int, Query(ge=1, le=10000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> Response:
    """Search the directory: text, filters, distance from a postcode or point; paginated."""
    if open_at is not None and open_at.tzinfo is not None:
        raise ValidationFailed("open_at is a UK local time, without an offset")
    origin = await handlers.resolve_origin(
        session=session, postcode=postcode, latitude=latitude, longitude=longitude
    )
    query = build_search(
        text=q,
        conditions=condition or (),
        categories=category or (),
        delivery_modes=delivery_mode or (),
        communication_support=communication_support or (),
        org_codes=org_code or (),
        self_referral=self_referral,
        free=free,
        open_day=open_day.value if open_day else None,
        open_at=open_at,
        age=age,
        origin=origin,
        radius_km=radius_km,
        include_remote=include_remote,
        sort=sort,
        page=page,
        page_size=page_size,
    )
    result = await handlers.search_services(session=session, query=query)
    return JSONResponse(result.model_dump(mode="json"))


# --- import, postcodes, vocabularies ----------------------------------------------------------


@router.post("/imports/oruk", response_model=ImportReport, responses=ERRORS, tags=["import"])
async def import_oruk(
    body: ImportRequest,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Import an Open Referral UK feed page: each valid record is upserted and published
    whole; each invalid one is reported with its reasons."""

    async def run_import() -> Outcome:
        report = await handlers.import_oruk(
            session=session,
            principal=principal,
            records=body.contents,
            settings=_settings(request),
            client_ip=client_ip(request),
        )
        return Outcome(report.model_dump(mode="json"))

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        body.model_dump(mode="json", exclude_unset=True),
        run_import,
    )


@router.get("/postcodes/{postcode}", response_model=PostcodeOut, responses=ERRORS, tags=["search"])
async def get_postcode(
    postcode: Annotated[str, Path(max_length=12)], session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Where a postcode is (from the directory's postcode table)."""
    normalised = domain.normalise_postcode(postcode)
    row = await DirectoryRepository(session).postcode(normalised)
    if row is None:
        raise NotFound(
            f"postcode {normalised} is well-formed but not in the directory's "
            "postcode table for this area"
        )
    return JSONResponse(
        PostcodeOut.model_validate(row, from_attributes=True).model_dump(mode="json")
    )


@router.get("/vocabularies", response_model=Vocabularies, responses=ERRORS, tags=["search"])
async def vocabularies(principal: CurrentPrincipal) -> Response:
    """The codes filters and services use, with their names and taxonomy term ids."""

    def terms(tax: taxonomies.Taxonomy) -> list[dict[str, Any]]:
        return [
            VocabularyTerm(
                code=t.code,
                name=t.name,
                description=t.description,
                taxonomy_term_id=tax.term_id(t.code),
            ).model_dump()
            for t in tax.terms
        ]

    return JSONResponse(
        {
            "categories": terms(taxonomies.CATEGORY_TAXONOMY),
            "conditions": terms(taxonomies.CONDITION_TAXONOMY),
            "delivery_modes": terms(taxonomies.DELIVERY_TAXONOMY),
            "communication_support": terms(taxonomies.COMMUNICATION_TAXONOMY),
        }
    )


# --- Open Referral UK read API ----------------------------------------------------------------

PerPage = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
PageNo = Annotated[int, Query(ge=1, le=10000)]
RecordIdQuery = Annotated[str | None, Query(pattern=domain.RECORD_ID, max_length=64)]


def _oruk_json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _page(contents: list[Any], *, total: int, page: int, per_page: int) -> dict[str, Any]:
    check_page_in_range(page, total, per_page)
    return {
        **Page.envelope(total=total, page=page, per_page=per_page, size=len(contents)),
        "contents": [c.model_dump(mode="json", exclude_none=True) for c in contents],
    }


@oruk_router.get("/", response_model=OrukApiInfo, responses=ERRORS)
async def oruk_info(principal: CurrentPrincipal) -> Response:
    """Which HSDS version and profile this API serves."""
    return _oruk_json(
        {
            "version": "3.0",
            "profile": "https://github.com/openreferral/uk-profile",
            "openapi_url": "/openapi.json",
        }
    )


@oruk_router.get("/services", response_model=OrukServicePage, responses=ERRORS)
async def oruk_services(
    session: SessionDep,
    principal: CurrentPrincipal,
    search: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    taxonomy_term_id: RecordIdQuery = None,
    taxonomy_id: RecordIdQuery = None,
    organization_id: RecordIdQuery = None,
    modified_after: QueryDateTime | None = None,
    full: bool = False,
    page: PageNo = 1,
    per_page: PerPage = 20,
) -> Response:
    """Published services, ORUK shape (one-to-one fields; `full=true` nests everything)."""
    ids, total = await DirectoryRepository(session).oruk_service_ids(
        text_query=search,
        taxonomy_term_id=taxonomy_term_id,
        taxonomy_id=taxonomy_id,
        organization_id=organization_id,
        modified_after=modified_after,
        page=page,
        per_page=per_page,
    )
    services = await handlers.oruk_services(session=session, ids=ids, full=full)
    return _oruk_json(_page(services, total=total, page=page, per_page=per_page))


@oruk_router.get("/services/{service_id}", response_model=OrukService, responses=ERRORS)
async def oruk_service(
    service_id: ServiceId, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One published service, fully nested (HSDS 3)."""
    record = await handlers.oruk_service(session=session, service_id=service_id)
    return _oruk_json(record.model_dump(mode="json", exclude_none=True))


@oruk_router.get(
    "/service_at_locations", response_model=OrukServiceAtLocationPage, responses=ERRORS
)
async def oruk_service_at_locations(
    session: SessionDep,
    principal: CurrentPrincipal,
    search: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    taxonomy_term_id: RecordIdQuery = None,
    postcode: Annotated[str | None, Query(max_length=12)] = None,
    proximity: Annotated[
        float | None,
        Query(ge=1, le=MAX_RADIUS_KM * 1000, description="metres from the postcode's centroid"),
    ] = None,
    page: PageNo = 1,
    per_page: PerPage = 20,
) -> Response:
    """Where published services are delivered; near a postcode, nearest first."""
    if proximity is not None and postcode is None:
        raise ValidationFailed("proximity needs a postcode to measure from")
    origin = await handlers.resolve_origin(
        session=session, postcode=postcode, latitude=None, longitude=None
    )
    rows, total = await DirectoryRepository(session).oruk_service_at_locations(
        text_query=search,
        taxonomy_term_id=taxonomy_term_id,
        origin=(origin.latitude, origin.longitude) if origin else None,
        proximity_m=proximity,
        page=page,
        per_page=per_page,
    )
    items = await handlers.oruk_service_at_locations(session=session, rows=rows)
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page))


@oruk_router.get("/taxonomies", response_model=OrukTaxonomyPage, responses=ERRORS)
async def oruk_taxonomies(
    session: SessionDep, principal: CurrentPrincipal, page: PageNo = 1, per_page: PerPage = 20
) -> Response:
    """The taxonomies the directory's terms come from (Waymark's own and imported ones)."""
    rows, total = await DirectoryRepository(session).taxonomies(page=page, per_page=per_page)
    items = [
        OrukTaxonomy(id=t.id, name=t.name, description=t.description, uri=t.uri, version=t.version)
        for t in rows
    ]
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page))


@oruk_router.get("/taxonomies/{taxonomy_id}", response_model=OrukTaxonomy, responses=ERRORS)
async def oruk_taxonomy(
    taxonomy_id: ServiceId, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One taxonomy."""
    t = await DirectoryRepository(session).taxonomy(taxonomy_id)
    if t is None:
        raise NotFound(f"no taxonomy {taxonomy_id}")
    return _oruk_json(
        OrukTaxonomy(
            id=t.id, name=t.name, description=t.description, uri=t.uri, version=t.version
        ).model_dump(mode="json", exclude_none=True)
    )


@oruk_router.get("/taxonomy_terms", response_model=OrukTaxonomyTermPage, responses=ERRORS)
async def oruk_taxonomy_terms(
    session: SessionDep,
    principal: CurrentPrincipal,
    taxonomy_id: RecordIdQuery = None,
    page: PageNo = 1,
    per_page: PerPage = 20,
) -> Response:
    """Taxonomy terms, optionally of one taxonomy."""
    rows, total = await DirectoryRepository(session).terms(
        taxonomy_id=taxonomy_id, page=page, per_page=per_page
    )
    items = [mapping.term_to_oruk(t) for t in rows]
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page))


@oruk_router.get("/taxonomy_terms/{term_id}", response_model=OrukTaxonomyTerm, responses=ERRORS)
async def oruk_taxonomy_term(
    term_id: ServiceId, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One taxonomy term."""
    t = await DirectoryRepository(session).term(term_id)
    if t is None:
        raise NotFound(f"no taxonomy term {term_id}")
    return _oruk_json(mapping.term_to_oruk(t).model_dump(mode="json", exclude_none=True))


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
    new.include_router(router)
    new.include_router(oruk_router)
    return new


app = build_app()
