"""The Open Referral UK (HSDS 3) routes: the importer (`POST /imports/oruk`) and the read API
under `/oruk`, the UK profile's endpoints (`/oruk/`, `/oruk/services[/{id}]`,
`/oruk/service_at_locations[/{id}]`, `/oruk/taxonomies[/{id}]`, `/oruk/taxonomy_terms[/{id}]`):
an ORUK consumer is pointed at `<directory>/oruk`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from services.directory import domain
from services.directory import queries as waymark_queries
from services.directory.oruk import importer, mapping, queries
from services.directory.oruk.filters import InvalidFilter, parse_filters
from services.directory.oruk.render import render
from services.directory.oruk.repository import OrukRepository, ServiceQuery
from services.directory.oruk.schemas import (
    ImportReport,
    ImportRequest,
    OrukApiInfo,
    OrukService,
    OrukServiceAtLocation,
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
    IdempotencyKey,
    ServiceId,
    directory_reader,
    settings_of,
)
from services.directory.search import (
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_RADIUS_KM,
    check_page_in_range,
)
from shared.access import Principal
from shared.auth import CurrentPrincipal, current_principal
from shared.errors import NotFound, ValidationFailed, WaymarkError
from shared.input_limits import TokenBuckets
from shared.web import Outcome, QueryDateTime, SessionDep, client_ip, once_per_key


class OrukRoute(APIRoute):
    """A route of the ORUK read API: a query value it cannot take (a filter, a page, a place) is
    a 400 problem, as the UK profile's filters are, where the rest of Waymark answers 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{e['loc'][-1]}: {e['msg']}" for e in list(exc.errors())[:5] if e.get("loc")
                )
                raise InvalidFilter(detail or "the query is not valid") from exc
            except ValidationFailed as exc:
                raise InvalidFilter(exc.message) from exc

        return route


imports = APIRouter()
router = APIRouter(prefix="/oruk", tags=["open referral uk"], route_class=OrukRoute)


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
# Read-only, and public unless the ICS turns that off (`oruk_public`): a service directory is
# public information, and the feed carries the directory's published records only. Every id in
# it is a UUID (`ids`); its routes take those, and a record's Waymark slug too.

PerPage = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
PageNo = Annotated[int, Query(ge=1, le=10000)]
RecordIdQuery = Annotated[str | None, Query(pattern=domain.RECORD_ID, max_length=64)]


def _filter(name: str, description: str) -> Any:
    return Query(alias=name, max_length=40, description=description)


MinimumAge = Annotated[
    str | None, _filter("minimum_age", "services whose minimum age is at least this (years)")
]
MaximumAge = Annotated[
    str | None, _filter("maximum_age", "services whose maximum age is at most this (years)")
]
Day = Annotated[str | None, _filter("day", "services open on this day: MO, TU, ... SU")]
StartTime = Annotated[
    str | None, _filter("start_time", "services with a schedule opening at or after HH:MM")
]
EndTime = Annotated[
    str | None, _filter("end_time", "services with a schedule closing at or before HH:MM")
]


class TooManyRequests(WaymarkError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


async def feed_reader(request: Request) -> Principal | None:
    """Anyone, limited per client address, while the feed is public; else a directory reader."""
    s = settings_of(request)
    if not s.oruk_public:
        return await directory_reader(await current_principal(request))
    if s.oruk_rate_limit_per_minute == 0:
        return None
    state = request.app.state
    if getattr(state, "oruk_buckets", None) is None:
        state.oruk_buckets = TokenBuckets(
            per_minute=s.oruk_rate_limit_per_minute, burst=s.oruk_rate_limit_burst
        )
    wait = state.oruk_buckets.take(client_ip(request) or "unknown")
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"this address has read the feed more than {s.oruk_rate_limit_burst} times in a "
            f"burst or {s.oruk_rate_limit_per_minute} a minute; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    return None


FeedReader = Annotated[Principal | None, Depends(feed_reader)]


def _oruk_json(body: Any, kind: str) -> JSONResponse:
    return JSONResponse(render(body, kind))


def _page(contents: list[Any], *, total: int, page: int, per_page: int) -> dict[str, Any]:
    check_page_in_range(page, total, per_page)
    return {
        **Page.envelope(total=total, page=page, per_page=per_page, size=len(contents)),
        "contents": [c.model_dump(mode="json", exclude_none=True) for c in contents],
    }


async def _resolved(repo: OrukRepository, kind: str, value: str | None) -> str | None:
    """The stored id behind a filter's id; an unknown one is kept, and so matches nothing."""
    if value is None:
        return None
    return await repo.resolve(kind, value) or value


async def _service_query(
    repo: OrukRepository,
    *,
    text: str | None,
    taxonomy_term_id: str | None,
    taxonomy_id: str | None,
    organization_id: str | None,
    modified_after: Any = None,
    ages: tuple[str | None, str | None],
    day: str | None,
    times: tuple[str | None, str | None],
) -> ServiceQuery:
    f = parse_filters(
        minimum_age=ages[0], maximum_age=ages[1], day=day, start_time=times[0], end_time=times[1]
    )
    return ServiceQuery(
        text=text,
        taxonomy_term_id=await _resolved(repo, "taxonomy_term", taxonomy_term_id),
        taxonomy_id=await _resolved(repo, "taxonomy", taxonomy_id),
        organization_id=await _resolved(repo, "organization", organization_id),
        modified_after=modified_after,
        filters=f,
    )


@router.get("/", response_model=OrukApiInfo, responses=ERRORS)
async def oruk_info(request: Request, reader: FeedReader) -> Response:
    """Which HSDS version and profile this API serves, and where its OpenAPI is."""
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "version": "3.0",
            "profile": "https://github.com/openreferral/uk-profile",
            "openapi_url": f"{base}{request.app.openapi_url}",
        }
    )


@router.get("/services", response_model=OrukServicePage, responses=ERRORS)
async def oruk_services(
    session: SessionDep,
    reader: FeedReader,
    search: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    taxonomy_term_id: RecordIdQuery = None,
    taxonomy_id: RecordIdQuery = None,
    organization_id: RecordIdQuery = None,
    modified_after: QueryDateTime | None = None,
    minimum_age: MinimumAge = None,
    maximum_age: MaximumAge = None,
    day: Day = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    full: bool = False,
    page: PageNo = 1,
    per_page: PerPage = 20,
) -> Response:
    """Published services, ORUK shape (one-to-one fields; `full=true` nests everything)."""
    repo = OrukRepository(session)
    q = await _service_query(
        repo,
        text=search,
        taxonomy_term_id=taxonomy_term_id,
        taxonomy_id=taxonomy_id,
        organization_id=organization_id,
        modified_after=modified_after,
        ages=(minimum_age, maximum_age),
        day=day,
        times=(start_time, end_time),
    )
    ids, total = await repo.oruk_service_ids(q, page=page, per_page=per_page)
    services = await queries.oruk_services(session=session, ids=ids, full=full)
    return _oruk_json(_page(services, total=total, page=page, per_page=per_page), "service")


@router.get("/services/{service_id}", response_model=OrukService, responses=ERRORS)
async def oruk_service(service_id: ServiceId, session: SessionDep, reader: FeedReader) -> Response:
    """One published service, fully nested (HSDS 3)."""
    stored = await OrukRepository(session).resolve("service", service_id)
    record = await queries.oruk_service(session=session, service_id=stored or service_id)
    return _oruk_json(record.model_dump(mode="json", exclude_none=True), "service")


@router.get("/service_at_locations", response_model=OrukServiceAtLocationPage, responses=ERRORS)
async def oruk_service_at_locations(
    session: SessionDep,
    reader: FeedReader,
    search: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    taxonomy_term_id: RecordIdQuery = None,
    taxonomy_id: RecordIdQuery = None,
    organization_id: RecordIdQuery = None,
    modified_after: QueryDateTime | None = None,
    minimum_age: MinimumAge = None,
    maximum_age: MaximumAge = None,
    day: Day = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
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
    repo = OrukRepository(session)
    q = await _service_query(
        repo,
        text=search,
        taxonomy_term_id=taxonomy_term_id,
        taxonomy_id=taxonomy_id,
        organization_id=organization_id,
        modified_after=modified_after,
        ages=(minimum_age, maximum_age),
        day=day,
        times=(start_time, end_time),
    )
    origin = await waymark_queries.resolve_origin(
        session=session, postcode=postcode, latitude=None, longitude=None
    )
    rows, total = await repo.oruk_service_at_locations(
        q,
        origin=(origin.latitude, origin.longitude) if origin else None,
        proximity_m=proximity,
        page=page,
        per_page=per_page,
    )
    items = await queries.oruk_service_at_locations(session=session, rows=rows)
    body = _page(items, total=total, page=page, per_page=per_page)
    return _oruk_json(body, "service_at_location")


@router.get(
    "/service_at_locations/{sal_id}", response_model=OrukServiceAtLocation, responses=ERRORS
)
async def oruk_service_at_location(
    sal_id: ServiceId, session: SessionDep, reader: FeedReader
) -> Response:
    """Where one published service is delivered, fully nested: the location and the service."""
    repo = OrukRepository(session)
    stored = await repo.resolve("service_at_location", sal_id)
    rows, _ = await repo.oruk_service_at_locations(
        ServiceQuery(), origin=None, proximity_m=None, page=1, per_page=1, sal_id=stored or sal_id
    )
    if not rows:
        raise NotFound(f"no published service at location {sal_id}")
    body = await queries.oruk_service_at_location_full(session=session, row=rows[0])
    return _oruk_json(body, "service_at_location")


@router.get("/taxonomies", response_model=OrukTaxonomyPage, responses=ERRORS)
async def oruk_taxonomies(
    session: SessionDep, reader: FeedReader, page: PageNo = 1, per_page: PerPage = 20
) -> Response:
    """The taxonomies the directory's terms come from (Waymark's own and imported ones)."""
    rows, total = await OrukRepository(session).taxonomies(page=page, per_page=per_page)
    items = [
        OrukTaxonomy(id=t.id, name=t.name, description=t.description, uri=t.uri, version=t.version)
        for t in rows
    ]
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page), "taxonomy")


@router.get("/taxonomies/{taxonomy_id}", response_model=OrukTaxonomy, responses=ERRORS)
async def oruk_taxonomy(
    taxonomy_id: ServiceId, session: SessionDep, reader: FeedReader
) -> Response:
    """One taxonomy."""
    repo = OrukRepository(session)
    stored = await repo.resolve("taxonomy", taxonomy_id)
    t = await repo.taxonomy(stored) if stored else None
    if t is None:
        raise NotFound(f"no taxonomy {taxonomy_id}")
    body = OrukTaxonomy(
        id=t.id, name=t.name, description=t.description, uri=t.uri, version=t.version
    ).model_dump(mode="json", exclude_none=True)
    return _oruk_json(body, "taxonomy")


@router.get("/taxonomy_terms", response_model=OrukTaxonomyTermPage, responses=ERRORS)
async def oruk_taxonomy_terms(
    session: SessionDep,
    reader: FeedReader,
    taxonomy_id: RecordIdQuery = None,
    page: PageNo = 1,
    per_page: PerPage = 20,
) -> Response:
    """Taxonomy terms, optionally of one taxonomy."""
    repo = OrukRepository(session)
    rows, total = await repo.terms(
        taxonomy_id=await _resolved(repo, "taxonomy", taxonomy_id), page=page, per_page=per_page
    )
    items = [mapping.term_to_oruk(t) for t in rows]
    return _oruk_json(_page(items, total=total, page=page, per_page=per_page), "taxonomy_term")


@router.get("/taxonomy_terms/{term_id}", response_model=OrukTaxonomyTerm, responses=ERRORS)
async def oruk_taxonomy_term(
    term_id: ServiceId, session: SessionDep, reader: FeedReader
) -> Response:
    """One taxonomy term."""
    repo = OrukRepository(session)
    stored = await repo.resolve("taxonomy_term", term_id)
    t = await repo.term(stored) if stored else None
    if t is None:
        raise NotFound(f"no taxonomy term {term_id}")
    body = mapping.term_to_oruk(t).model_dump(mode="json", exclude_none=True)
    return _oruk_json(body, "taxonomy_term")
