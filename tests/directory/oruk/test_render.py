"""What the feed fills in for the UK profile's required fields Waymark may not know: never an
invented value; an empty string where the profile's schema permits one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.directory.oruk.render import render
from tests.directory.oruk import profile


def uid() -> str:
    return str(uuid.uuid4())


def service(location: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": uid(),
        "name": "A service",
        "status": "active",
        "service_at_locations": [{"id": uid(), "location": location}],
        **extra,
    }


class TestRender:
    def test_an_address_without_county_city_or_street_gets_empty_strings(self) -> None:
        address = {
            "id": uid(),
            "postal_code": "WY1 0BG",
            "country": "GB",
            "address_type": "physical",
        }
        body = service({"id": uid(), "location_type": "physical", "addresses": [address]})
        assert profile.errors("compiled/service.json", body)  # as stored: not the profile's
        out = render(body, "service")
        got = out["service_at_locations"][0]["location"]["addresses"][0]
        assert (got["address_1"], got["city"], got["state_province"]) == ("", "", "")
        assert profile.errors("compiled/service.json", out) == []

    def test_a_known_county_is_kept(self) -> None:
        address = {
            "id": uid(),
            "address_1": "1 Market St",
            "city": "Wayford",
            "state_province": "West Yorkshire",
            "postal_code": "WY1 0BG",
            "country": "GB",
            "address_type": "physical",
        }
        out = render(
            service({"id": uid(), "location_type": "physical", "addresses": [address]}), "service"
        )
        got = out["service_at_locations"][0]["location"]["addresses"][0]
        assert got == address

    @pytest.mark.parametrize(
        ("location", "expected"),
        [
            ({"latitude": 53.7, "longitude": -1.9}, "physical"),
            ({"addresses": [{"id": "a", "postal_code": "WY1 0BG", "country": "GB"}]}, "physical"),
            ({}, "virtual"),
            ({"location_type": "postal"}, "postal"),
        ],
    )
    def test_a_location_without_a_type_is_physical_when_placed(
        self, location: dict[str, Any], expected: str
    ) -> None:
        out = render(service({"id": uid(), **location}), "service")
        assert out["service_at_locations"][0]["location"]["location_type"] == expected

    def test_terms_taxonomies_and_organisations_get_an_empty_description(self) -> None:
        term = {"id": "esd-st-1091", "name": "Pain management"}
        body = service(
            {"id": uid(), "location_type": "virtual"},
            organization={"id": uid(), "name": "Provider"},
            attributes=[{"id": uid(), "taxonomy_term_id": "esd-st-1091", "taxonomy_term": term}],
        )
        out = render(body, "service")
        assert out["attributes"][0]["taxonomy_term"]["description"] == ""
        assert out["organization"]["description"] == ""
        assert profile.errors("compiled/service.json", out) == []
        assert render({"id": uid(), "name": "T"}, "taxonomy")["description"] == ""
