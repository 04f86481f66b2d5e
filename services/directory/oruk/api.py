"""The Open Referral UK (HSDS 3) routes: the importer (`POST /imports/oruk`) and the read API
under `/oruk` (`/oruk/services`, `/oruk/services/{id}`, `/oruk/service_at_locations`,
`/oruk/taxonomies`, `/oruk/taxonomy_terms`): an ORUK consumer is pointed at `<directory>/oruk`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.directory import domain
from services.directory import queries as waymark_queries
from services.directory.oruk import importer, mapping, queries
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
from services.directory.params import (
    ERRORS,
    DirectoryReader,
    IdempotencyKey,
    ServiceId,
    settings_of,
)
from services.directory.repository import DirectoryRepository
from services.directory.search import (
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_RADIUS_KM,
    check_page_in_range,
)
from shared.auth import CurrentPrincipal
from shared.errors import NotFound, ValidationFailed
from shared.web import Outcome, QueryDateTime, SessionDep, client_ip, once_per_key

imports = APIRouter()
router = APIRouter(prefix="/oruk", tags=["open referral uk"])


# --- the importer -----------------------------------------------------------------------------


@imports.post("/imports/oruk", response_model=ImportReport, responses=ERRORS, tags=["import"])
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
        report = await importer.import_oruk(
            session=session,
            principal=principal,
            records=body.contents,
            settings=settings_of(request),
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


@router.get("/", response_model=OrukApiInfo, responses=ERRORS)
async def oruk_info(principal: DirectoryReader) -> Response:
    """Which HSDS version and profile this API serves."""
    return _oruk_json(
        {
            "version": "3.0",
            "profile": "https://github.com/openreferral/uk-profile",
            "openapi_url": "/openapi.json",
        }
    )


@router.get("/services", response_model=OrukServicePage, responses=ERRORS)
async def oruk_services(
    session: SessionDep,
    principal: DirectoryReader,
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
    services = await queries.oruk_services(session=session, ids=ids, full=full)
    return _oruk_json(_page(services, total=total, page=page, per_page=per_page))


@router.get("/services/{service_id}", response_model=OrukService, responses=ERRORS)
async def oruk_service(
    service_id: ServiceId, session: SessionDep, principal: DirectoryReader
) -> Response:
    """One published service, fully nested (HSDS 3)."""
    record = await queries.oruk_service(session=session, service_id=service_id)
    return _oruk_json(record.model_dump(mode="json", exclude_none=True))


@router.get("/service_at_locations", response_model=OrukServiceAtLocationPage, responses=ERRORS)
async def oruk_service_at_locations(
    session: SessionDep,
    principal: DirectoryReader,
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
    origin = await waymark_queries.resolve_origin(
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
    items = await queries.oruk_service_at_locations(session=session, rows=rows)
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page))


@router.get("/taxonomies", response_model=OrukTaxonomyPage, responses=ERRORS)
async def oruk_taxonomies(
    session: SessionDep, principal: DirectoryReader, page: PageNo = 1, per_page: PerPage = 20
) -> Response:
    """The taxonomies the directory's terms come from (Waymark's own and imported ones)."""
    rows, total = await DirectoryRepository(session).taxonomies(page=page, per_page=per_page)
    items = [
        OrukTaxonomy(id=t.id, name=t.name, description=t.description, uri=t.uri, version=t.version)
        for t in rows
    ]
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page))


@router.get("/taxonomies/{taxonomy_id}", response_model=OrukTaxonomy, responses=ERRORS)
async def oruk_taxonomy(
    taxonomy_id: ServiceId, session: SessionDep, principal: DirectoryReader
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


@router.get("/taxonomy_terms", response_model=OrukTaxonomyTermPage, responses=ERRORS)
async def oruk_taxonomy_terms(
    session: SessionDep,
    principal: DirectoryReader,
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


@router.get("/taxonomy_terms/{term_id}", response_model=OrukTaxonomyTerm, responses=ERRORS)
async def oruk_taxonomy_term(
    term_id: ServiceId, session: SessionDep, principal: DirectoryReader
) -> Response:
    """One taxonomy term."""
    t = await DirectoryRepository(session).term(term_id)
    if t is None:
        raise NotFound(f"no taxonomy term {term_id}")
    return _oruk_json(mapping.term_to_oruk(t).model_dump(mode="json", exclude_none=True))
