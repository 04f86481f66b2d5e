"""The Open Referral UK face on the real PostgreSQL: import -> export round trip, per-record
reports for invalid records (never half a record), and the ORUK read endpoints."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.directory import domain
from services.directory.oruk.taxonomies import (
    CATEGORY_TAXONOMY,
    COMMUNICATION_TAXONOMY,
    CONDITION_TAXONOMY,
    DELIVERY_TAXONOMY,
    REFERRAL_TAXONOMY,
    WAYMARK_TAXONOMIES,
    Taxonomy,
)
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import create_published, new_code, new_provider, query


def uid() -> str:
    return str(uuid.uuid4())


def waymark_attribute(
    service_id: str, tax: Taxonomy, code: str, value: str | None = None
) -> dict[str, Any]:
    term = next(t for t in tax.terms if t.code == code)
    out: dict[str, Any] = {
        "id": uid(),
        "link_id": service_id,
        "link_type": "service",
        "link_entity": "service",
        "taxonomy_term_id": tax.term_id(code),
        "taxonomy_term": {
            "id": tax.term_id(code),
            "code": code,
            "name": term.name,
            "description": term.description,
            "taxonomy": tax.name,
            "taxonomy_id": tax.id,
            "language": "en",
        },
    }
    if value is not None:
        out["value"] = value
    return out


def oruk_record(
    org_code: str, *, org_id: str | None = None, service_id: str | None = None
) -> dict[str, Any]:
    """A fully nested HSDS 3 service using every field Waymark keeps."""
    sid, org_id = service_id or uid(), org_id or uid()
    loc_id = uid()
    return {
        "id": sid,
        "organization_id": org_id,
        "name": "Wayford Persistent Pain Programme",
        "alternate_name": "WPPP",
        "description": "A twelve week group programme for people "
        "living with persistent pain and low mood.",
        "url": "https://pain.wayford.example/programme",
        "email": "pain@wayford.example",
        "status": "active",
        "interpretation_services": "Interpreters on request.",
        "application_process": "Referral by GP or physiotherapist through Waymark.",
        "fees_description": "Free on the NHS.",
        "accreditations": "CQC registered.",
        "eligibility_description": "Adults with pain for over three months.",
        "minimum_age": 18,
        "maximum_age": 99,
        "assured_date": "2026-02-01",
        "assurer_email": "assurance@wayford.example",
        "alert": "New evening group from May.",
        "organization": {
            "id": org_id,
            "name": f"Provider {org_code}",
            "description": "NHS pain service.",
            "email": "info@wayford.example",
            "website": "https://wayford.example",
            "organization_identifiers": [
                {
                    "id": uid(),
                    "identifier_scheme": "ODS",
                    "identifier_type": "ODS code",
                    "identifier": org_code,
                }
            ],
        },
        "phones": [{"id": uid(), "number": "01632 960123", "type": "voice"}],
        "schedules": [
            {
                "id": uid(),
                "service_id": sid,
                "freq": "WEEKLY",
                "interval": 1,
                "byday": "TU,TH",
                "opens_at": "09:30",
                "closes_at": "16:00",
                "description": "Groups on Tuesday and Thursday.",
                "valid_from": "2026-01-01",
            }
        ],
        "service_areas": [
            {
                "id": uid(),
                "service_id": sid,
                "name": "Wayford and Marsh",
                "description": "Residents of the Wayford and Marsh ICS.",
            }
        ],
        "service_at_locations": [
            {
                "id": uid(),
                "service_id": sid,
                "location_id": loc_id,
                "location": {
                    "id": loc_id,
                    "location_type": "physical",
                    "name": "Wayford Health Centre",
                    "description": "Ground floor, step-free.",
                    "latitude": 53.709534,
                    "longitude": -1.931754,
                    "external_identifier": "100012345678",
                    "external_identifier_type": "UPRN",
                    "addresses": [
                        {
                            "id": uid(),
                            "location_id": loc_id,
                            "address_1": "1 Market St",
                            "city": "Wayford",
                            "postal_code": "WY1 0BG",
                            "country": "GB",
                            "address_type": "physical",
                        }
                    ],
                    "accessibility": [
                        {
                            "id": uid(),
                            "location_id": loc_id,
                            "description": "Hearing loop at reception.",
                        }
                    ],
                },
            }
        ],
        "languages": [
            {"id": uid(), "service_id": sid, "name": "English", "code": "en"},
            {"id": uid(), "service_id": sid, "name": "Polish", "code": "pl"},
        ],
        "funding": [{"id": uid(), "source": "NHS Wayford and Marsh ICB"}],
        "cost_options": [
            {
                "id": uid(),
                "service_id": sid,
                "option": "All sessions",
                "currency": "GBP",
                "amount": 0,
                "amount_description": "free",
            }
        ],
        "contacts": [
            {
                "id": uid(),
                "name": "Programme coordinator",
                "title": "Coordinator",
                "email": "coord@wayford.example",
                "phones": [{"id": uid(), "number": "01632 960124"}],
            }
        ],
        "attributes": [
            waymark_attribute(sid, CATEGORY_TAXONOMY, "pain_management_programme"),
            waymark_attribute(sid, CONDITION_TAXONOMY, "persistent_pain"),
            waymark_attribute(sid, CONDITION_TAXONOMY, "mental_health"),
            waymark_attribute(sid, DELIVERY_TAXONOMY, "in_person"),
            waymark_attribute(sid, DELIVERY_TAXONOMY, "group"),
            waymark_attribute(sid, COMMUNICATION_TAXONOMY, "interpreters"),
            waymark_attribute(sid, REFERRAL_TAXONOMY, "waiting_weeks", "9"),
            {
                "id": uid(),
                "link_id": sid,
                "link_type": "service",
                "link_entity": "service",
                "taxonomy_term_id": "esd-st-1091",
                "taxonomy_term": {
                    "id": "esd-st-1091",
                    "code": "1091",
                    "name": "Pain management",
                    "taxonomy": "esd service types",
                    "taxonomy_id": "esd-service-types",
                    "term_uri": "https://example.org/def/service/1091",
                },
            },
        ],
    }


async def import_(
    client: httpx.AsyncClient, headers: dict[str, str], records: list[Any]
) -> dict[str, Any]:
    r = await client.post("/imports/oruk", json={"contents": records}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def staff(s: Settings, code: str) -> dict[str, str]:
    return auth(s, role="service_staff", org=code)


class TestRoundTrip:
    async def test_import_then_export_gives_back_the_same_record(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = new_code("ORUK")
        record = oruk_record(code)
        report = await import_(directory_client, staff(settings, code), [record])
        assert report == {
            "received": 1,
            "created": [record["id"]],
            "updated": [],
            "unchanged": [],
            "rejected": [],
        }
        r = await directory_client.get(
            f"/oruk/services/{record['id']}", headers=auth(settings, role="partner", org="LA-1")
        )
        assert r.status_code == 200, r.text
        exported = r.json()
        assert exported.pop("last_modified")
        assert exported == record

    async def test_the_waymark_view_reads_the_imported_facts(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = new_code("ORUK")
        record = oruk_record(code)
        await import_(directory_client, staff(settings, code), [record])
        out = (
            await directory_client.get(f"/services/{record['id']}", headers=staff(settings, code))
        ).json()
        assert (out["category"], out["conditions"], out["delivery_modes"]) == (
            "pain_management_programme",
            ["persistent_pain", "mental_health"],
            ["in_person", "group"],
        )
        assert out["waiting_weeks"] == 9 and out["communication_support"] == ["interpreters"]
        assert out["lifecycle"] == "published" and out["org_code"] == code
        assert out["free_of_charge"] is True and out["self_referral"] is False

    async def test_a_waymark_made_service_survives_export_and_reimport(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(
            directory_client,
            p,
            self_referral=True,
            schedules=[{"byday": ["FR"], "opens_at": "10:00", "closes_at": "12:00"}],
            contacts=[{"name": "Desk", "phone": "01632 960999"}],
        )
        exported = (
            await directory_client.get(f"/oruk/services/{s['id']}", headers=p.headers)
        ).json()
        again = await import_(directory_client, p.headers, [copy.deepcopy(exported)])
        assert again["unchanged"] == [s["id"]], again
        changed = dict(exported, name="Renamed physiotherapy")
        again = await import_(directory_client, p.headers, [changed])
        assert again["updated"] == [s["id"]], again
        after = (await directory_client.get(f"/oruk/services/{s['id']}", headers=p.headers)).json()
        assert after["name"] == "Renamed physiotherapy"
        for key in ("schedules", "contacts", "attributes", "service_at_locations"):
            assert after[key] == exported[key], key


class TestImportReport:
    async def test_valid_records_import_and_each_invalid_one_is_reported(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        code = new_code("ORUK")
        org_id = uid()
        good1, good2 = (oruk_record(code, org_id=org_id), oruk_record(code, org_id=org_id))
        no_name = oruk_record(code, org_id=org_id)
        del no_name["name"]
        no_org = oruk_record(code, org_id=org_id)
        del no_org["organization"]
        bad_status = dict(oruk_record(code, org_id=org_id), status="open")
        no_category = oruk_record(code, org_id=org_id)
        no_category["attributes"] = no_category["attributes"][1:]
        unknown_term = oruk_record(code, org_id=org_id)
        del unknown_term["attributes"][-1]["taxonomy_term"]
        unknown_term["attributes"][-1]["taxonomy_term_id"] = "never-seen-term"
        half_point = oruk_record(code, org_id=org_id)
        del half_point["service_at_locations"][0]["location"]["longitude"]
        not_a_record = "just a string"
        report = await import_(
            directory_client,
            staff(settings, code),
            [
                good1,
                no_name,
                no_org,
                bad_status,
                no_category,
                unknown_term,
                half_point,
                not_a_record,
                good2,
            ],
        )
        assert report["created"] == [good1["id"], good2["id"]]
        rejected = {r["index"]: r for r in report["rejected"]}
        assert sorted(rejected) == [1, 2, 3, 4, 5, 6, 7]
        expect = {
            1: "name",
            2: "organization",
            3: "status",
            4: "service category",
            5: "never-seen-term",
            6: "latitude and longitude",
            7: "dictionary",
        }
        for index, word in expect.items():
            assert any(word in reason for reason in rejected[index]["reasons"]), rejected[index]
        assert rejected[1]["id"] == no_name["id"] and rejected[7]["id"] is None
        for r in [no_name, no_org, bad_status, no_category, unknown_term, half_point]:
            assert (
                await query(directory_sessions, "SELECT 1 FROM service WHERE id = :i", i=r["id"])
                == []
            )

    async def test_a_record_failing_late_leaves_nothing_behind(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        """The organisation is written before the publication check fails: the savepoint
        takes it back with the rest of the record."""
        code = new_code("ORUK")
        record = oruk_record(code)
        record["service_at_locations"] = []  # in person, but nowhere
        report = await import_(directory_client, staff(settings, code), [record])
        assert (
            report["created"] == [] and "physical location" in report["rejected"][0]["reasons"][0]
        )
        for table, column, value in [
            ("organization", "org_code", code),
            ("service", "id", record["id"]),
            ("attribute", "service_id", record["id"]),
            ("outbox", "key", record["id"]),
        ]:
            assert (
                await query(
                    directory_sessions, f"SELECT 1 FROM {table} WHERE {column} = :v", v=value
                )
                == []
            )

    async def test_records_of_other_organisations_are_refused(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        theirs = oruk_record(new_code("ORUK"))
        report = await import_(directory_client, staff(settings, new_code("ORUK")), [theirs])
        assert report["rejected"][0]["index"] == 0
        assert "service staff" in report["rejected"][0]["reasons"][0]

    async def test_a_record_may_not_take_another_services_ids(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = new_code("ORUK")
        first = oruk_record(code)
        await import_(directory_client, staff(settings, code), [first])
        thief = oruk_record(code, org_id=first["organization_id"])
        thief["attributes"][0]["id"] = first["attributes"][0]["id"]
        report = await import_(directory_client, staff(settings, code), [thief])
        assert "belongs to another service" in report["rejected"][0]["reasons"][0]

    async def test_imports_publish_events(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        code = new_code("ORUK")
        record = oruk_record(code)
        await import_(directory_client, staff(settings, code), [record])
        await import_(directory_client, staff(settings, code), [record])  # unchanged
        rows = await query(
            directory_sessions, "SELECT payload FROM outbox WHERE key = :k", k=record["id"]
        )
        assert [r.payload["type"] for r in rows] == ["uk.waymark.directory.service.published"]
        data = rows[0].payload["data"]
        assert data["org_code"] == code and data["waiting_weeks"] == 9
        assert data["category"] == "pain_management_programme"

    async def test_an_oversized_import_is_refused_whole(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await directory_client.post(
            "/imports/oruk", json={"contents": [{}] * 501}, headers=staff(settings, new_code())
        )
        assert r.status_code == 422


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
        mine = [c for c in page["contents"] if c["service_id"] in (near["id"], far["id"])]
        assert [c["service_id"] for c in mine] == [near["id"], far["id"]]
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
        assert near["id"] in got and far["id"] not in got

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
