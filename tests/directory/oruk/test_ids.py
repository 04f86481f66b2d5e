"""HSDS ids are UUIDs: Waymark's slugs (`svc-crisis-04`) get a name-based UUID in the ORUK feed,
the same one every time, while UUIDs pass through unchanged."""

from __future__ import annotations

import uuid

import pytest

from services.directory.domain import WAYMARK_NS
from services.directory.oruk.ids import as_oruk, is_uuid, oruk_id

SVC = "svc-crisis-04"


class TestOrukId:
    def test_a_slug_gets_a_name_based_uuid_of_waymarks_namespace(self) -> None:
        got = oruk_id("service", SVC)
        assert got == str(uuid.uuid5(WAYMARK_NS, f"oruk/service/{SVC}"))
        assert uuid.UUID(got).version == 5

    def test_it_is_the_same_every_time_and_differs_by_kind(self) -> None:
        assert oruk_id("service", SVC) == oruk_id("service", SVC)
        assert oruk_id("service", SVC) != oruk_id("location", SVC)
        assert oruk_id("service", SVC) != oruk_id("service", "svc-crisis-05")

    @pytest.mark.parametrize(
        "value",
        ["5b0f3c1e-8d1a-4f5e-9a57-7761796d6172", "00000000-0000-4000-8000-000000000000"],
    )
    def test_a_uuid_passes_through(self, value: str) -> None:
        assert oruk_id("service", value) == value

    @pytest.mark.parametrize(
        "value",
        [
            "5B0F3C1E-8D1A-4F5E-9A57-7761796D6172",  # not the canonical lower-case form
            "5b0f3c1e8d1a4f5e9a577761796d6172",  # no hyphens
            "{5b0f3c1e-8d1a-4f5e-9a57-7761796d6172}",
            "esd-st-1091",
            "1091",
        ],
    )
    def test_anything_but_a_canonical_uuid_is_mapped(self, value: str) -> None:
        assert not is_uuid(value)
        assert oruk_id("taxonomy_term", value) != value
        assert is_uuid(oruk_id("taxonomy_term", value))


class TestAsOruk:
    def test_every_id_and_reference_of_a_nested_service_is_a_uuid(self) -> None:
        body = {
            "id": SVC,
            "organization_id": "org-1",
            "organization": {
                "id": "org-1",
                "organization_identifiers": [{"id": "oi-1", "identifier": "RXX"}],
            },
            "schedules": [{"id": "sch-1", "service_id": SVC}],
            "phones": [{"id": "ph-1"}],
            "contacts": [{"id": "c-1", "phones": [{"id": "ph-2"}]}],
            "service_at_locations": [
                {
                    "id": "sal-1",
                    "service_id": SVC,
                    "location_id": "loc-1",
                    "location": {
                        "id": "loc-1",
                        "addresses": [{"id": "a-1", "location_id": "loc-1"}],
                        "accessibility": [{"id": "ac-1", "location_id": "loc-1"}],
                    },
                }
            ],
            "attributes": [
                {
                    "id": "at-1",
                    "link_id": SVC,
                    "link_entity": "service",
                    "taxonomy_term_id": "esd-st-1091",
                    "taxonomy_term": {
                        "id": "esd-st-1091",
                        "parent_id": "esd-st-1",
                        "taxonomy_id": "esd",
                        "code": "1091",
                    },
                }
            ],
        }
        out = as_oruk(body, "service")
        sid = oruk_id("service", SVC)
        assert out["id"] == sid and out["schedules"][0]["service_id"] == sid
        assert (
            out["organization_id"] == out["organization"]["id"] == oruk_id("organization", "org-1")
        )
        sal = out["service_at_locations"][0]
        assert sal["service_id"] == sid
        assert sal["location_id"] == sal["location"]["id"] == oruk_id("location", "loc-1")
        assert sal["location"]["addresses"][0]["location_id"] == oruk_id("location", "loc-1")
        a = out["attributes"][0]
        assert a["link_id"] == sid
        assert a["taxonomy_term_id"] == a["taxonomy_term"]["id"]
        assert a["taxonomy_term"]["parent_id"] == oruk_id("taxonomy_term", "esd-st-1")
        assert a["taxonomy_term"]["taxonomy_id"] == oruk_id("taxonomy", "esd")
        assert a["taxonomy_term"]["code"] == "1091"  # not an id: untouched
        ids: list[str] = []

        def collect(node: object) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    if (k == "id" or k.endswith("_id")) and isinstance(v, str):
                        ids.append(v)
                    collect(v)
            elif isinstance(node, list):
                for v in node:
                    collect(v)

        collect(out)
        assert len(ids) == 23 and all(is_uuid(i) for i in ids), ids
        assert body["id"] == SVC  # the input is not changed

    def test_a_page_maps_its_contents(self) -> None:
        page = {"total_items": 1, "contents": [{"id": SVC, "organization_id": None}]}
        out = as_oruk(page, "service")
        assert out["contents"][0] == {"id": oruk_id("service", SVC), "organization_id": None}
        assert out["total_items"] == 1

    def test_a_service_at_location_listing_maps_its_service(self) -> None:
        out = as_oruk({"id": "sal-1", "service": {"id": SVC}}, "service_at_location")
        assert out["service"]["id"] == oruk_id("service", SVC)
        assert out["id"] == oruk_id("service_at_location", "sal-1")
