"""Every query of the directory service."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import RowMapping
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.domain import SEARCHABLE_STATUSES, Lifecycle
from services.directory.models import (
    Attribute,
    Location,
    Organization,
    Postcode,
    Service,
    ServiceAtLocation,
    Taxonomy,
    TaxonomyTerm,
)
from services.directory.search import SearchQuery, SortOrder

# weights for ts_rank_cd, in the order {D, C, B, A}: name (A) counts most, then taxonomy (B),
# then description (C)
RANK_WEIGHTS = "{0.1, 0.3, 0.6, 1.0}"


@dataclass(frozen=True)
class SearchSql:
    sql: str
    params: dict[str, Any]


def search_sql(q: SearchQuery, *, count_only: bool = False) -> SearchSql:
    """The directory search as one SQL statement.

    Relevance is "how many of the searched words does the service match" (each word is a
    tsquery of its English stem), plus ts_rank_cd normalised to 0..1 as the tie-breaker, so a
    service matching "back pain low mood" in full always ranks above one matching only "back
    pain", however often that one says "pain". Distance uses the earthdistance GiST index:
    the box around the origin finds candidate locations, the great-circle distance cuts to
    the radius, and each service keeps its nearest location.

    Two things keep it fast (bench/directory.py, EXPLAIN ANALYZE in bench/RESULTS.md):
    - the origin point is a MATERIALIZED CTE. Inlined, a prepared statement's generic plan
      (PostgreSQL's choice after five executions) computes ll_to_earth(:lat, :lon) again for
      every candidate location, three times each: ten times slower than the point made once.
    - the page is chosen from the sort keys alone (`hits`); only its rows are joined to their
      organisation and nearest location and read in full.
    """
    params: dict[str, Any] = {
        "statuses": [s.value for s in SEARCHABLE_STATUSES],
        "published": Lifecycle.PUBLISHED.value,
    }
    ctes, joins = [], []
    where = ["s.lifecycle = :published", "s.status = ANY(CAST(:statuses AS TEXT[]))"]
    score = "CAST(NULL AS DOUBLE PRECISION)"
    distance = "CAST(NULL AS DOUBLE PRECISION)"
    if q.text:
        params["text"] = q.text
        ctes.append("""q AS MATERIALIZED (
            SELECT tsquery_any(t) AS tsq, coalesce(array_agg(t), '{}') AS terms
            FROM (SELECT plainto_tsquery('simple'::regconfig, w) AS t
                  FROM unnest(tsvector_to_array(
                      to_tsvector('english'::regconfig, CAST(:text AS TEXT)))) AS w) words)""")
        joins.append("CROSS JOIN q")
        where.append("(q.tsq IS NULL OR s.search_vector @@ q.tsq)")
        score = f"""(CASE WHEN q.tsq IS NULL THEN 0 ELSE
                  (SELECT count(*) FROM unnest(q.terms) AS t WHERE s.search_vector @@ t)
                  + ts_rank_cd('{RANK_WEIGHTS}', s.search_vector, q.tsq, 32) END)"""
    if q.origin is not None:
        params.update(lat=q.origin.latitude, lon=q.origin.longitude, radius=q.radius_m)
        ctes.append(
            "o AS MATERIALIZED (SELECT ll_to_earth(CAST(:lat AS DOUBLE PRECISION), "
            "CAST(:lon AS DOUBLE PRECISION)) AS pt)"
        )
        ctes.append("""near AS (
            SELECT DISTINCT ON (sal.service_id) sal.service_id, sal.location_id, d.distance_m
            FROM o
            JOIN location l ON earth_box(o.pt, CAST(:radius AS DOUBLE PRECISION)) @> l.geo
            CROSS JOIN LATERAL (SELECT sec_to_gc(cube_distance(o.pt, l.geo)) AS distance_m) d
            JOIN service_at_location sal ON sal.location_id = l.id
            WHERE d.distance_m <= CAST(:radius AS DOUBLE PRECISION)
            ORDER BY sal.service_id, d.distance_m, sal.location_id)""")
        joins.append("LEFT JOIN near ON near.service_id = s.id")
        where.append(
            "(near.service_id IS NOT NULL OR s.remote)"
            if q.include_remote
            else "near.service_id IS NOT NULL"
        )
        distance = "near.distance_m"
    if q.conditions:
        params["conditions"] = [c.value for c in q.conditions]
        where.append("s.conditions @> CAST(:conditions AS TEXT[])")
    if q.categories:
        params["categories"] = [c.value for c in q.categories]
        where.append("s.category = ANY(CAST(:categories AS TEXT[]))")
    if q.delivery_modes:
        params["modes"] = [m.value for m in q.delivery_modes]
        where.append("s.delivery_modes && CAST(:modes AS TEXT[])")
    if q.communication_support:
        params["support"] = [c.value for c in q.communication_support]
        where.append("s.communication_support @> CAST(:support AS TEXT[])")
    if q.org_codes:
        params["orgs"] = list(q.org_codes)
        where.append("upper(s.org_code) = ANY(CAST(:orgs AS TEXT[]))")
    if q.self_referral is not None:
        params["self_referral"] = q.self_referral
        where.append("s.self_referral = :self_referral")
    if q.free is not None:
        params["free"] = q.free
        where.append("s.free_of_charge = :free")
    open_window = q.open_minutes()
    if open_window is not None:
        params["open_lo"], params["open_hi"] = open_window
        where.append("s.opening && int4range(CAST(:open_lo AS INTEGER), CAST(:open_hi AS INTEGER))")
    if q.age is not None:
        params["age"] = q.age
        where.append(
            "(s.minimum_age IS NULL OR s.minimum_age <= :age) "
            "AND (s.maximum_age IS NULL OR s.maximum_age >= :age)"
        )

    # every service has its organisation (a NOT NULL foreign key), so the matches are counted
    # and ordered without joining it
    body = f"""FROM service s
        {" ".join(joins)}
        WHERE {" AND ".join(where)}"""
    if count_only:
        with_clause = ("WITH " + ",\n".join(ctes)) if ctes else ""
        return SearchSql(f"{with_clause} SELECT count(*) AS total {body}", params)
    # in terms of the columns of `hits`, so the page keeps its order when read in full
    order = {
        SortOrder.RELEVANCE: "score DESC, distance_m ASC NULLS LAST, sort_name, id",
        SortOrder.DISTANCE: "distance_m ASC NULLS LAST, score DESC NULLS LAST, sort_name, id",
        SortOrder.NAME: "sort_name, id",
    }[q.sort]
    near_location = "near.location_id" if q.origin is not None else "CAST(NULL AS TEXT)"
    params.update(limit=q.page_size, offset=q.offset)
    ctes.append(f"""hits AS (
        SELECT s.id, {score} AS score, {distance} AS distance_m,
               {near_location} AS location_id, lower(s.name) AS sort_name,
               count(*) OVER () AS total
        {body}
        ORDER BY {order}
        LIMIT :limit OFFSET :offset)""")
    location_cols = (
        "nl.id AS loc_id, nl.location_type AS loc_type, nl.name AS loc_name, "
        "nl.description AS loc_description, nl.addresses AS loc_addresses, "
        "nl.postcode AS loc_postcode, nl.latitude AS loc_latitude, "
        "nl.longitude AS loc_longitude"
        if q.origin is not None
        else "NULL AS loc_id"
    )
    with_ctes = ",\n".join(ctes)
    location_join = (
        "LEFT JOIN location nl ON nl.id = hits.location_id" if q.origin is not None else ""
    )
    sql = f"""WITH {with_ctes}
        SELECT s.id, s.name, s.description, s.org_code, org.name AS organization_name,
               s.category, s.conditions, s.status, s.self_referral, s.delivery_modes,
               s.communication_support, s.waiting_weeks, s.free_of_charge, s.minimum_age,
               s.maximum_age, s.application_process, hits.score, hits.distance_m,
               {location_cols}, hits.total
        FROM hits
        JOIN service s ON s.id = hits.id
        JOIN organization org ON org.id = s.organization_id
        {location_join}
        ORDER BY {", ".join("hits." + key for key in order.split(", "))}"""
    return SearchSql(sql, params)


class DirectoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, sql: str, **params: Any) -> list[RowMapping]:
        # a count reuses its listing's parameters; bind only those this statement names
        used = {k: v for k, v in params.items() if re.search(rf":{k}\b", sql)}
        result = await self.session.exec(text(sql).bindparams(**used))  # type: ignore[call-overload]
        return list(result.mappings().all())

    # --- postcodes --------------------------------------------------------------------------
    async def postcode(self, postcode: str) -> Postcode | None:
        return await self.session.get(Postcode, postcode)

    async def postcode_point(self, postcode: str) -> tuple[float, float] | None:
        """Where a postcode is, read without the ORM (a search's first statement: the ORM's
        identity map and loading were most of its cost in the search bench's profile)."""
        rows = await self._rows(
            "SELECT latitude, longitude FROM postcode WHERE postcode = :postcode",
            postcode=postcode,
        )
        return (rows[0]["latitude"], rows[0]["longitude"]) if rows else None

    async def postcodes(self, postcodes: Sequence[str]) -> dict[str, tuple[float, float]]:
        if not postcodes:
            return {}
        rows = await self.session.exec(
            select(Postcode).where(  # type: ignore[call-overload]
                Postcode.postcode.in_(list(postcodes))
            )
        )  # type: ignore[attr-defined]
        return {p.postcode: (p.latitude, p.longitude) for p in rows.scalars().all()}

    # --- organisations ----------------------------------------------------------------------
    def add(self, row: Any) -> None:
        self.session.add(row)

    async def organization_by_code(
        self, org_code: str, *, for_update: bool = False
    ) -> Organization | None:
        stmt = select(Organization).where(Organization.org_code == org_code)  # type: ignore[arg-type]
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).scalars().first()  # type: ignore[call-overload]

    async def organization(self, organization_id: str) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    # --- services ---------------------------------------------------------------------------
    async def service(self, service_id: str, *, for_update: bool = False) -> Service | None:
        if for_update:
            # one writer at a time per service: concurrent updates queue instead of losing
            # each other's changes
            stmt = select(Service).where(Service.id == service_id).with_for_update()  # type: ignore[arg-type]
            return (await self.session.exec(stmt)).scalars().first()  # type: ignore[call-overload]
        return await self.session.get(Service, service_id)

    async def links(self, service_id: str) -> list[tuple[str, str | None, Location]]:
        rows = await self.session.exec(  # type: ignore[call-overload]
            select(ServiceAtLocation.id, ServiceAtLocation.description, Location)
            .join(Location, Location.id == ServiceAtLocation.location_id)  # type: ignore[arg-type]
            .where(ServiceAtLocation.service_id == service_id)
            .order_by(ServiceAtLocation.position)
        )
        return [(r[0], r[1], r[2]) for r in rows.all()]

    async def attributes(self, service_id: str) -> list[tuple[Attribute, TaxonomyTerm]]:
        rows = await self.session.exec(  # type: ignore[call-overload]
            select(Attribute, TaxonomyTerm)
            .join(TaxonomyTerm, TaxonomyTerm.id == Attribute.taxonomy_term_id)  # type: ignore[arg-type]
            .where(Attribute.service_id == service_id)
            .order_by(Attribute.position)
        )
        return [(r[0], r[1]) for r in rows.all()]

    async def location(self, location_id: str) -> Location | None:
        return await self.session.get(Location, location_id)

    async def term(self, term_id: str) -> TaxonomyTerm | None:
        return await self.session.get(TaxonomyTerm, term_id)

    async def taxonomy(self, taxonomy_id: str) -> Taxonomy | None:
        return await self.session.get(Taxonomy, taxonomy_id)

    async def replace_links(
        self, service_id: str, links: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """(id, location id, description) in order; the service's old links go."""
        await self.session.exec(
            delete(ServiceAtLocation).where(ServiceAtLocation.service_id == service_id)  # type: ignore[call-overload]
        )
        if links:
            await self.session.exec(
                insert(ServiceAtLocation).values(
                    [  # type: ignore[call-overload]
                        {
                            "id": i,
                            "service_id": service_id,
                            "location_id": loc,
                            "description": d,
                            "position": n,
                        }
                        for n, (i, loc, d) in enumerate(links)
                    ]
                )
            )

    async def replace_attributes(
        self, service_id: str, attrs: Sequence[tuple[str, str, str | None, str | None]]
    ) -> None:
        """(id, taxonomy term id, link_type, value) in order."""
        await self.session.exec(
            delete(Attribute).where(Attribute.service_id == service_id)  # type: ignore[call-overload]
        )
        if attrs:
            await self.session.exec(
                insert(Attribute).values(
                    [  # type: ignore[call-overload]
                        {
                            "id": i,
                            "service_id": service_id,
                            "taxonomy_term_id": t,
                            "link_type": lt,
                            "value": v,
                            "position": n,
                        }
                        for n, (i, t, lt, v) in enumerate(attrs)
                    ]
                )
            )

    async def attribute_owners(self, attribute_ids: Sequence[str]) -> dict[str, str]:
        if not attribute_ids:
            return {}
        rows = await self._rows(
            "SELECT id, service_id FROM attribute WHERE id = ANY(CAST(:ids AS TEXT[]))",
            ids=list(attribute_ids),
        )
        return {r["id"]: r["service_id"] for r in rows}

    async def link_owners(self, link_ids: Sequence[str]) -> dict[str, str]:
        if not link_ids:
            return {}
        rows = await self._rows(
            "SELECT id, service_id FROM service_at_location WHERE id = ANY(CAST(:ids AS TEXT[]))",
            ids=list(link_ids),
        )
        return {r["id"]: r["service_id"] for r in rows}

    async def refresh_derived(self, service_id: str, opening: str) -> None:
        """Recompute what the database derives: the opening ranges and the taxonomy text that
        feeds the search vector."""
        await self.session.exec(
            text("""
            UPDATE service SET opening = CAST(:opening AS INT4MULTIRANGE),
                taxonomy_text = coalesce((
                    SELECT string_agg(t.name || ' ' || coalesce(t.description, ''), ' '
                                      ORDER BY a.position)
                    FROM attribute a JOIN taxonomy_term t ON t.id = a.taxonomy_term_id
                    WHERE a.service_id = :id), '')
            WHERE id = :id""").bindparams(opening=opening, id=service_id)
        )  # type: ignore[call-overload]

    # --- search -----------------------------------------------------------------------------
    async def search(self, q: SearchQuery) -> tuple[list[RowMapping], int]:
        built = search_sql(q)
        rows = await self._rows(built.sql, **built.params)
        if rows:
            return rows, int(rows[0]["total"])
        if q.page == 1:
            return [], 0
        counted = search_sql(q, count_only=True)
        total = (await self._rows(counted.sql, **counted.params))[0]["total"]
        return [], int(total)

    # --- the ORUK read API ------------------------------------------------------------------
    async def services(self, ids: Sequence[str]) -> dict[str, Service]:
        if not ids:
            return {}
        rows = await self.session.exec(
            select(Service).where(  # type: ignore[call-overload]
                Service.id.in_(list(ids))
            )
        )  # type: ignore[attr-defined]
        return {s.id: s for s in rows.scalars().all()}

    async def locations(self, ids: Sequence[str]) -> dict[str, Location]:
        if not ids:
            return {}
        rows = await self.session.exec(
            select(Location).where(  # type: ignore[call-overload]
                Location.id.in_(list(ids))
            )
        )  # type: ignore[attr-defined]
        return {loc.id: loc for loc in rows.scalars().all()}

    async def taxonomies(self, *, page: int, per_page: int) -> tuple[list[Taxonomy], int]:
        total = (await self._rows("SELECT count(*) AS n FROM taxonomy"))[0]["n"]
        rows = await self.session.exec(
            select(Taxonomy)
            .order_by(  # type: ignore[call-overload]
                Taxonomy.name, Taxonomy.id
            )
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        return list(rows.scalars().all()), int(total)

    async def terms(
        self, *, taxonomy_id: str | None, page: int, per_page: int
    ) -> tuple[list[TaxonomyTerm], int]:
        stmt = select(TaxonomyTerm)
        count = "SELECT count(*) AS n FROM taxonomy_term"
        params: dict[str, Any] = {}
        if taxonomy_id:
            stmt = stmt.where(TaxonomyTerm.taxonomy_id == taxonomy_id)  # type: ignore[arg-type]
            count += " WHERE taxonomy_id = :t"
            params["t"] = taxonomy_id
        total = (await self._rows(count, **params))[0]["n"]
        rows = await self.session.exec(
            stmt.order_by(  # type: ignore[call-overload]
                TaxonomyTerm.taxonomy_id, TaxonomyTerm.name, TaxonomyTerm.id
            )
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        return list(rows.scalars().all()), int(total)
