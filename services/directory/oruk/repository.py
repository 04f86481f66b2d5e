"""The queries of the Open Referral UK read API: published services and where they are
delivered, filtered as the UK profile documents; and the stored record behind an id the feed
showed (a UUID, or a slug's name-based UUID: see `ids`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from services.directory.oruk import filters as oruk_filters
from services.directory.oruk.ids import is_uuid, oruk_id
from services.directory.repository import RANK_WEIGHTS, DirectoryRepository

#: the table of each kind of record an ORUK route or filter names by id
TABLES = {
    "service": "service",
    "organization": "organization",
    "location": "location",
    "service_at_location": "service_at_location",
    "taxonomy": "taxonomy",
    "taxonomy_term": "taxonomy_term",
}
_TSQUERY = "websearch_to_tsquery('english'::regconfig, CAST(:text AS TEXT))"
_UUID_SQL = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"


@dataclass
class ServiceQuery:
    """What an ORUK listing asks of the published services (ids already resolved)."""

    text: str | None = None
    taxonomy_term_id: str | None = None
    taxonomy_id: str | None = None
    organization_id: str | None = None
    modified_after: datetime | None = None
    filters: oruk_filters.Filters = field(default_factory=oruk_filters.Filters)

    def where(self) -> tuple[list[str], dict[str, Any]]:
        where, params = oruk_filters.conditions(self.filters)
        where.insert(0, "s.lifecycle = 'published'")
        if self.text:
            params["text"] = self.text
            where.append(f"s.search_vector @@ {_TSQUERY}")
        if self.taxonomy_term_id:
            params["term"] = self.taxonomy_term_id
            where.append(
                "EXISTS (SELECT 1 FROM attribute a WHERE a.service_id = s.id "
                "AND a.taxonomy_term_id = :term)"
            )
        if self.taxonomy_id:
            params["taxonomy"] = self.taxonomy_id
            where.append(
                "EXISTS (SELECT 1 FROM attribute a JOIN taxonomy_term t "
                "ON t.id = a.taxonomy_term_id WHERE a.service_id = s.id "
                "AND t.taxonomy_id = :taxonomy)"
            )
        if self.organization_id:
            params["org"] = self.organization_id
            where.append("s.organization_id = :org")
        if self.modified_after:
            params["after"] = self.modified_after
            where.append("s.updated_at >= :after")
        return where, params


class OrukRepository(DirectoryRepository):
    async def slug_ids(self, kind: str) -> dict[str, str]:
        """The feed's UUID for each of the table's non-UUID ids -> that stored id. These are
        the few records created with a slug (the demo's, a partner's chosen ids)."""
        rows = await self._rows(f"SELECT id FROM {TABLES[kind]} WHERE id !~ {_UUID_SQL}")
        return {oruk_id(kind, r["id"]): str(r["id"]) for r in rows}

    async def resolve(self, kind: str, value: str) -> str | None:
        """The stored id of the `kind` record the feed shows as `value` (or names by its own
        slug), or None."""
        found = await self._rows(f"SELECT id FROM {TABLES[kind]} WHERE id = :v", v=value)
        if found:
            return str(found[0]["id"])
        return (await self.slug_ids(kind)).get(value) if is_uuid(value) else None

    async def oruk_service_ids(
        self, q: ServiceQuery, *, page: int, per_page: int
    ) -> tuple[list[str], int]:
        where, params = q.where()
        params.update(limit=per_page, offset=(page - 1) * per_page)
        order = "lower(s.name), s.id"
        if q.text:
            order = f"ts_rank_cd('{RANK_WEIGHTS}', s.search_vector, {_TSQUERY}, 32) DESC, " + order
        cond = " AND ".join(where)
        rows = await self._rows(
            f"""
            SELECT s.id, count(*) OVER () AS total FROM service s
            WHERE {cond} ORDER BY {order} LIMIT :limit OFFSET :offset""",
            **params,
        )
        if rows:
            return [r["id"] for r in rows], int(rows[0]["total"])
        total = (await self._rows(f"SELECT count(*) AS n FROM service s WHERE {cond}", **params))[
            0
        ]["n"]
        return [], int(total)

    async def oruk_service_at_locations(
        self,
        q: ServiceQuery,
        *,
        origin: tuple[float, float] | None,
        proximity_m: float | None,
        page: int,
        per_page: int,
        sal_id: str | None = None,
    ) -> tuple[list[RowMapping], int]:
        where, params = q.where()
        params.update(limit=per_page, offset=(page - 1) * per_page)
        distance = "CAST(NULL AS DOUBLE PRECISION)"
        order = "lower(s.name), s.id, sal.position"
        if sal_id is not None:
            params["sal"] = sal_id
            where.append("sal.id = :sal")
        if origin is not None:
            params.update(lat=origin[0], lon=origin[1])
            pt = "ll_to_earth(CAST(:lat AS DOUBLE PRECISION), CAST(:lon AS DOUBLE PRECISION))"
            distance = f"sec_to_gc(cube_distance({pt}, l.geo))"
            where.append("l.geo IS NOT NULL")
            if proximity_m is not None:
                params["radius"] = proximity_m
                where.append(
                    f"earth_box({pt}, CAST(:radius AS DOUBLE PRECISION)) @> l.geo "
                    f"AND {distance} <= CAST(:radius AS DOUBLE PRECISION)"
                )
            order = "distance_m, " + order
        cond = " AND ".join(where)
        joins = """FROM service_at_location sal
            JOIN service s ON s.id = sal.service_id
            JOIN location l ON l.id = sal.location_id"""
        rows = await self._rows(
            f"""
            SELECT sal.id AS sal_id, sal.description AS sal_description, s.id AS service_id,
                   l.id AS location_id, {distance} AS distance_m, count(*) OVER () AS total
            {joins}
            WHERE {cond} ORDER BY {order} LIMIT :limit OFFSET :offset""",
            **params,
        )
        if rows:
            return rows, int(rows[0]["total"])
        total = (await self._rows(f"SELECT count(*) AS n {joins} WHERE {cond}", **params))[0]["n"]
        return [], int(total)
