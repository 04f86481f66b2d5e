"""The rules of a directory search: pure and synchronous, no I/O.

A search's parts are checked together and become one `SearchQuery`, which drives the SQL
(repository) and the response; and the paging every list of the directory shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from enum import StrEnum

from services.directory.domain import (
    MINUTES_PER_DAY,
    WEEKDAYS,
    Category,
    CommunicationSupport,
    Condition,
    DeliveryMode,
    Weekday,
    unique_sorted,
    weekday_code,
)
from shared.errors import NotFound, ValidationFailed
from shared.identifiers import ORG_CODE


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    DISTANCE = "distance"
    NAME = "name"


MIN_RADIUS_KM, MAX_RADIUS_KM, DEFAULT_RADIUS_KM = 0.1, 100.0, 10.0
MAX_PAGE_SIZE = 100
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class Origin:
    latitude: float
    longitude: float
    postcode: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A validated search: the same object drives the SQL and the response."""

    text: str | None = None
    conditions: tuple[Condition, ...] = ()  # all of
    categories: tuple[Category, ...] = ()  # any of
    delivery_modes: tuple[DeliveryMode, ...] = ()  # any of
    communication_support: tuple[CommunicationSupport, ...] = ()  # all of
    org_codes: tuple[str, ...] = ()  # any of
    self_referral: bool | None = None
    free: bool | None = None
    open_day: Weekday | None = None
    open_at: time | None = None
    age: int | None = None
    origin: Origin | None = None
    radius_km: float = DEFAULT_RADIUS_KM
    include_remote: bool = False
    sort: SortOrder = SortOrder.RELEVANCE
    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def radius_m(self) -> float:
        return self.radius_km * 1000

    def open_minutes(self) -> tuple[int, int] | None:
        """The minute-of-week range the service must be open in (a point or the whole day)."""
        if self.open_day is None:
            return None
        base = WEEKDAYS.index(self.open_day) * MINUTES_PER_DAY
        if self.open_at is None:
            return base, base + MINUTES_PER_DAY
        at = base + self.open_at.hour * 60 + self.open_at.minute
        return at, at + 1


def build_search(
    *,
    text: str | None,
    conditions: Sequence[Condition],
    categories: Sequence[Category],
    delivery_modes: Sequence[DeliveryMode],
    communication_support: Sequence[CommunicationSupport],
    org_codes: Sequence[str] = (),
    self_referral: bool | None = None,
    free: bool | None = None,
    open_day: str | None = None,
    open_at: time | None = None,
    age: int | None = None,
    origin: Origin | None = None,
    radius_km: float | None = None,
    include_remote: bool = False,
    sort: SortOrder | None = None,
    page: int = 1,
    page_size: int = 20,
) -> SearchQuery:
    """Check that the parts of a search make sense together; say plainly when they don't."""
    text = " ".join((text or "").split()) or None
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"search text is at most {MAX_QUERY_CHARS} characters")
    if open_at is not None and open_day is None:
        raise ValidationFailed("open_at needs open_day (the day the service should be open)")
    day = weekday_code(open_day) if open_day is not None else None
    if radius_km is not None:
        if origin is None:
            raise ValidationFailed(
                "radius_km needs a place to measure from: postcode, or latitude and longitude"
            )
        if not MIN_RADIUS_KM <= radius_km <= MAX_RADIUS_KM:
            raise ValidationFailed(
                f"radius_km must be between {MIN_RADIUS_KM} and {MAX_RADIUS_KM} km"
            )
    if include_remote and origin is None:
        raise ValidationFailed("include_remote only applies to a search near a place")
    if sort is None:
        sort = (
            SortOrder.RELEVANCE
            if text
            else SortOrder.DISTANCE
            if origin is not None
            else SortOrder.NAME
        )
    if sort is SortOrder.DISTANCE and origin is None:
        raise ValidationFailed("sort=distance needs a place: postcode, or latitude and longitude")
    if sort is SortOrder.RELEVANCE and not text:
        raise ValidationFailed("sort=relevance needs search text (q)")
    for code in org_codes:
        if not ORG_CODE.fullmatch(code):
            raise ValidationFailed(
                "org_code is an organisation code: letters, digits and '-', at most 20"
            )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"page_size must be 1 to {MAX_PAGE_SIZE}")
    return SearchQuery(
        text=text,
        conditions=unique_sorted(conditions),
        categories=unique_sorted(categories),
        delivery_modes=unique_sorted(delivery_modes),
        communication_support=unique_sorted(communication_support),
        org_codes=tuple(sorted({o.upper() for o in org_codes})),
        self_referral=self_referral,
        free=free,
        open_day=day,
        open_at=open_at,
        age=age,
        origin=origin,
        radius_km=radius_km if radius_km is not None else DEFAULT_RADIUS_KM,
        include_remote=include_remote,
        sort=sort,
        page=page,
        page_size=page_size,
    )


def check_coordinates(latitude: float | None, longitude: float | None) -> Origin | None:
    if latitude is None and longitude is None:
        return None
    if latitude is None or longitude is None:
        raise ValidationFailed("give both latitude and longitude, or neither")
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValidationFailed("latitude must be -90..90 and longitude -180..180")
    return Origin(latitude, longitude)


def last_page(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


def check_page_in_range(page: int, total: int, page_size: int) -> None:
    if page > last_page(total, page_size):
        raise NotFound(
            f"page {page} is beyond the last page ({last_page(total, page_size)}) "
            f"of {total} results",
            total_items=total,
            total_pages=last_page(total, page_size),
        )
