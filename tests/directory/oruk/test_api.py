"""The Open Referral UK read endpoints (`/oruk`) on the real PostgreSQL."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.directory import domain
from services.directory.oruk.ids import oruk_id
from services.directory.oruk.taxonomies import (
    CATEGORY_TAXONOMY,
    CONDITION_TAXONOMY,
    WAYMARK_TAXONOMIES,
)
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import create_published, new_provider, query


class TestOrukReadApi:
    async def test_service_at_locations_near_a_postcode_nearest_first(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        term = CATEGORY_TAXONOMY.term_id("crisis")  # a category only this test uses
        near = await create_published(
            directory_client,
            p,
            category="crisis",
            locations=[{"name": "near", "latitude": 53.7100, "longitude": -1.9320}],
        )
        far = await create_published(
            directory_client,
            p,
            category="crisis",
            locations=[{"name": "far", "latitude": 53.7300, "longitude": -1.9320}],
        )
        r = await directory_client.get(
            "/oruk/service_at_locations",
            headers=p.headers,
            params={
                "postcode": "WY1 0BG",
                "proximity": 5000,
                "taxonomy_term_id": term,
                "per_page": 100,
            },
        )
        assert r.status_code == 200, r.text
        page = r.json()
        ids = [oruk_id("service", near["id"]), oruk_id("service", far["id"])]
        mine = [c for c in page["contents"] if c["service_id"] in ids]
        assert [c["service_id"] for c in mine] == ids
        assert mine[0]["distance"] < mine[1]["distance"] <= 5000
        assert mine[0]["location"]["name"] == "near" and mine[0]["service"]["status"]
        tight = await directory_client.get(
            "/oruk/service_at_locations",
            headers=p.headers,
            params={
                "postcode": "WY1 0BG",
                "proximity": 500,
                "taxonomy_term_id": term,
                "per_page": 100,
            },
        )
        got = {c["service_id"] for c in tight.json()["contents"]}
        assert ids[0] in got and ids[1] not in got

    async def test_services_list_filters_by_organisation_and_pages(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        made = [await create_published(directory_client, p, name=f"S{n}") for n in range(3)]
        org_id = made[0]["organization_id"]
        r = await directory_client.get(
            "/oruk/services", headers=p.headers, params={"organization_id": org_id, "per_page": 2}
        )
        page = r.json()
        assert (page["total_items"], page["total_pages"], page["size"]) == (3, 2, 2)
        assert page["first_page"] and not page["last_page"] and not page["empty"]
        assert [s["name"] for s in page["contents"]] == ["S0", "S1"]
        assert "attributes" not in page["contents"][0] or page["contents"][0]["attributes"] == []
        full = (
            await directory_client.get(
                "/oruk/services",
                headers=p.headers,
                params={"organization_id": org_id, "full": "true", "page": 2, "per_page": 2},
            )
        ).json()
        assert full["contents"][0]["attributes"] and full["last_page"]
        beyond = await directory_client.get(
            "/oruk/services",
            headers=p.headers,
            params={"organization_id": org_id, "page": 3, "per_page": 2},
        )
        assert beyond.status_code == 404

    async def test_taxonomies_and_terms_include_waymarks_vocabularies(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        h = auth(settings, role="partner", org="LA-1")
        taxonomies = (
            await directory_client.get("/oruk/taxonomies", headers=h, params={"per_page": 100})
        ).json()
        ids = {t["id"] for t in taxonomies["contents"]}
        assert {t.id for t in WAYMARK_TAXONOMIES} <= ids
        terms = (
            await directory_client.get(
                "/oruk/taxonomy_terms",
                headers=h,
                params={"taxonomy_id": CATEGORY_TAXONOMY.id, "per_page": 100},
            )
        ).json()
        assert sorted(t["code"] for t in terms["contents"]) == sorted(
            c.value for c in domain.Category
        )
        one = await directory_client.get(
            f"/oruk/taxonomy_terms/{CONDITION_TAXONOMY.term_id('mental_health')}",
            headers=h,
        )
        assert one.json()["name"] == "Mental health"
        # the migration's copy of the vocabularies is the domain's, term for term
        rows = await query(
            directory_sessions,
            "SELECT id, code, name, description, taxonomy_id FROM taxonomy_term WHERE waymark",
        )
        assert {(r.id, r.code, r.name, r.description, r.taxonomy_id) for r in rows} == {
            (tax.term_id(t.code), t.code, t.name, t.description, tax.id)
            for tax in WAYMARK_TAXONOMIES
            for t in tax.terms
        }

    async def test_unpublished_services_are_not_in_the_feed(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(directory_client, p)
        await directory_client.post(
            f"/services/{s['id']}/withdraw", headers=p.headers, json={"reason": "service_closed"}
        )
        r = await directory_client.get(f"/oruk/services/{s['id']}", headers=p.headers)
        assert r.status_code == 404
        info = (await directory_client.get("/oruk/", headers=p.headers)).json()
        assert info["version"] == "3.0"
