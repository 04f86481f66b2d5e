"""The Open Referral UK importer on the real PostgreSQL: import -> export round trip, and
per-record reports for invalid records (never half a record)."""

from __future__ import annotations

import copy

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.directory.oruk.render import render
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import create_published, new_code, new_provider, query
from tests.directory.oruk.conftest import import_, oruk_record, staff, uid


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
        # as sent, but in the UK profile's terms: the feed's non-UUID ids (esd-st-1091) as
        # UUIDs, and the address's state_province, which the import did not give, empty
        assert exported == render(record, "service")
        assert (
            exported["service_at_locations"][0]["location"]["addresses"][0]["state_province"] == ""
        )

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
