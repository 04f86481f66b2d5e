"""The directory's search routes: search, where a postcode is, and the vocabularies the
filters use (routes only: parse, authorise, call a handler, render)."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.directory import domain, queries
from services.directory.domain import Category, CommunicationSupport, Condition, DeliveryMode
from services.directory.oruk import taxonomies
from services.directory.params import ERRORS, DirectoryReader, ReadSessionDep
from services.directory.repository import DirectoryRepository
from services.directory.schemas import PostcodeOut, SearchPage, Vocabularies, VocabularyTerm
from services.directory.search import (
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_RADIUS_KM,
    MIN_RADIUS_KM,
    SortOrder,
    build_search,
)
from shared.errors import NotFound, ValidationFailed
from shared.web import SessionDep

router = APIRouter()


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


async def _known_params(request: Request) -> None:  # async: no worker thread (params.py)
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
    session: ReadSessionDep,
    principal: DirectoryReader,
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
    origin = await queries.resolve_origin(
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
    result = await queries.search_services(session=session, query=query)
    return JSONResponse(result.model_dump(mode="json"))


@router.get("/postcodes/{postcode}", response_model=PostcodeOut, responses=ERRORS, tags=["search"])
async def get_postcode(
    postcode: Annotated[str, Path(max_length=12)], session: SessionDep, principal: DirectoryReader
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
async def vocabularies(principal: DirectoryReader) -> Response:
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
