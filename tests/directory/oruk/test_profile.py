"""The ORUK feed against the Open Referral UK profile's own schemas and OpenAPI (issue #19):
every endpoint the profile's OpenAPI lists answers, with no token, a body its schemas accept
with 0 errors; the documented filters filter; an ICS can close the feed.

On the real PostgreSQL, through the directory app in-process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.directory.oruk.ids import oruk_id
from services.directory.oruk.taxonomies import CATEGORY_TAXONOMY, CONDITION_TAXONOMY
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import CENTRE_POSTCODE, create, create_published, new_provider
from tests.directory.oruk import profile
from tests.directory.oruk.conftest import import_, oruk_record, staff

OUR_PATHS = {
    "/",
    "/services",
    "/services/{id}",
    "/service_at_locations",
    "/service_at_locations/{id}",
    "/taxonomies",
    "/taxonomies/{id}",
    "/taxonomy_terms",
    "/taxonomy_terms/{id}",
}


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def _slug() -> str:
    return f"svc-oruk-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app_settings(directory_client: httpx.AsyncClient) -> Iterator[Any]:
    """The directory app's state, its settings put back after the test."""
    from services.directory.api import app

    before = app.state.settings
    yield app.state
    app.state.settings = before


class TestTheFeedPassesTheUkProfile:
    def test_we_serve_every_path_of_the_profiles_openapi(self) -> None:
        assert profile.openapi_paths() <= OUR_PATHS
        from services.directory.api import app

        paths = app.openapi()["paths"]
        ours = {p.removeprefix("/oruk") or "/" for p in paths if p.startswith("/oruk")}
        assert {p.split("{")[0] for p in OUR_PATHS} == {p.split("{")[0] for p in ours}, ours
        for p in ours:
            assert set(paths["/oruk" + p.rstrip("/") if p != "/" else "/oruk/"]) == {"get"}, p

    def test_the_validators_catch_what_the_profile_forbids(self) -> None:
        # guards against a validator that accepts anything: a slug id, a relative URL, a
        # missing state_province are each an error
        assert profile.errors(
            "compiled/service_list.json", {"id": "svc-x", "name": "n", "status": "active"}
        )
        assert profile.openapi_errors("/", {"version": "3.0", "openapi_url": "/openapi.json"})
        address = {
            "id": str(uuid.uuid4()),
            "address_1": "1 Market St",
            "city": "Wayford",
            "postal_code": "WY1 0BG",
            "country": "GB",
            "address_type": "physical",
        }
        svc = {
            "id": str(uuid.uuid4()),
            "name": "n",
            "status": "active",
            "service_at_locations": [
                {
                    "id": str(uuid.uuid4()),
                    "location": {
                        "id": str(uuid.uuid4()),
                        "location_type": "physical",
                        "addresses": [address],
                    },
                }
            ],
        }
        assert any("state_province" in e for e in profile.errors("compiled/service.json", svc))

    async def test_every_endpoint_answers_the_profiles_shape_without_a_token(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        slug = _slug()
        made = await create_published(
            directory_client,
            p,
            id=slug,
            minimum_age=18,
            maximum_age=65,
            schedules=[{"byday": ["MO", "WE"], "opens_at": "09:00", "closes_at": "17:00"}],
            locations=[
                {
                    "name": "Wayford Health Centre",
                    "postcode": CENTRE_POSTCODE,
                    "address_1": "1 Market Street",
                    "city": "Wayford",
                    "county": "West Yorkshire",
                },
                {"name": "Marsh clinic", "latitude": 53.72, "longitude": -1.94},
            ],
        )
        assert made["id"] == slug  # the directory's own API keeps the slug
        sid = oruk_id("service", slug)
        c = directory_client  # no Authorization header on any call below

        info = _ok(await c.get("/oruk/"))
        assert profile.openapi_errors("/", info) == []
        assert info["openapi_url"] == "http://directory/openapi.json"

        org_id = made["organization_id"]
        listing = _ok(await c.get("/oruk/services", params={"organization_id": org_id}))
        assert profile.openapi_errors("/services", listing) == []
        assert [s["id"] for s in listing["contents"]] == [sid]
        for item in listing["contents"]:
            assert profile.errors("compiled/service_list.json", item) == []

        full = _ok(await c.get(f"/oruk/services/{sid}"))
        assert profile.openapi_errors("/services/{id}", full) == []
        assert profile.errors("compiled/service.json", full) == []
        assert full["id"] == sid and full["schedules"][0]["service_id"] == sid
        assert all(a["link_id"] == sid for a in full["attributes"]) and full["attributes"]
        addresses = [
            a for sal in full["service_at_locations"] for a in sal["location"]["addresses"]
        ]
        assert [(a["postal_code"], a["state_province"]) for a in addresses] == [
            (CENTRE_POSTCODE, "West Yorkshire")
        ]
        # the slug still finds it, under its UUID; and the directory's own API, given the
        # UUID, answers with the slug a referral names the service by
        assert _ok(await c.get(f"/oruk/services/{slug}"))["id"] == sid
        own = _ok(await c.get(f"/services/{sid}", headers=p.headers))
        assert own["id"] == slug
        assert [loc["county"] for loc in own["locations"]] == ["West Yorkshire", None]

        sals = _ok(
            await c.get(
                "/oruk/service_at_locations",
                params={"postcode": CENTRE_POSTCODE, "proximity": 5000, "organization_id": org_id},
            )
        )
        assert profile.openapi_errors("/service_at_locations", sals) == []
        mine = [s for s in sals["contents"] if s["service_id"] == sid]
        assert len(mine) == 2
        for item in mine:
            assert profile.errors("compiled/service_at_location_list.json", item) == []
        one = _ok(await c.get(f"/oruk/service_at_locations/{mine[0]['id']}"))
        # the profile's OpenAPI names the service schema here (see uk_profile/README.md); the
        # body is the fully nested service_at_location its description promises
        assert profile.errors("compiled/service_at_location.json", one) == []
        assert one["id"] == mine[0]["id"] and one["service"]["id"] == sid
        assert one["service"]["schedules"] and one["location"]["id"] == one["location_id"]
        missing = await c.get(f"/oruk/service_at_locations/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"

        taxonomies = _ok(await c.get("/oruk/taxonomies", params={"per_page": 100}))
        assert profile.openapi_errors("/taxonomies", taxonomies) == []
        tax = _ok(await c.get(f"/oruk/taxonomies/{CATEGORY_TAXONOMY.id}"))
        assert profile.openapi_errors("/taxonomies/{id}", tax) == []
        terms = _ok(await c.get("/oruk/taxonomy_terms", params={"per_page": 100}))
        assert profile.openapi_errors("/taxonomy_terms", terms) == []
        term = _ok(
            await c.get(f"/oruk/taxonomy_terms/{CONDITION_TAXONOMY.term_id('mental_health')}")
        )
        assert profile.openapi_errors("/taxonomy_terms/{id}", term) == []

    async def test_an_imported_slug_term_is_a_uuid_in_the_feed_and_filters_by_it(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = f"RX{uuid.uuid4().hex[:4].upper()}"
        record = oruk_record(code)
        report = await import_(directory_client, staff(settings, code), [record])
        assert report["created"] == [record["id"]], report
        await directory_client.post(
            f"/services/{record['id']}/publish", headers=staff(settings, code)
        )
        got = _ok(await directory_client.get(f"/oruk/services/{record['id']}"))
        assert profile.errors("compiled/service.json", got) == []
        term = oruk_id("taxonomy_term", "esd-st-1091")
        assert term in {a["taxonomy_term_id"] for a in got["attributes"]}
        found = _ok(
            await directory_client.get(
                "/oruk/services",
                params={"taxonomy_term_id": term, "organization_id": record["organization_id"]},
            )
        )
        assert [s["id"] for s in found["contents"]] == [record["id"]]
        one = _ok(await directory_client.get(f"/oruk/taxonomy_terms/{term}"))
        assert profile.errors("taxonomy_term.json", one) == [] and one["code"] == "1091"


class TestFilters:
    async def test_the_documented_filters_filter_on_both_listings(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        weekdays = [
            {"byday": ["MO", "TU", "WE", "TH", "FR"], "opens_at": "09:00", "closes_at": "17:00"}
        ]
        saturday = [{"byday": ["SA"], "opens_at": "10:00", "closes_at": "12:30"}]
        made = {
            "adults": await create_published(
                directory_client,
                p,
                name="adults",
                minimum_age=18,
                maximum_age=65,
                schedules=weekdays,
            ),
            "young": await create_published(
                directory_client,
                p,
                name="young",
                minimum_age=16,
                maximum_age=25,
                schedules=saturday,
            ),
            "any": await create_published(directory_client, p, name="any"),
        }
        org_id = made["adults"]["organization_id"]
        cases: list[tuple[dict[str, str], set[str]]] = [
            ({}, {"adults", "young", "any"}),
            ({"minimum_age": "18"}, {"adults"}),
            ({"minimum_age": "16"}, {"adults", "young"}),
            ({"maximum_age": "25"}, {"young"}),
            ({"maximum_age": "65"}, {"adults", "young"}),
            ({"minimum_age": "16", "maximum_age": "30"}, {"young"}),
            ({"day": "MO"}, {"adults"}),
            ({"day": "saturday"}, {"young"}),
            ({"day": "SU"}, set()),
            ({"start_time": "09:30"}, {"young"}),
            ({"start_time": "09:00"}, {"adults", "young"}),
            ({"end_time": "13:00"}, {"young"}),
            ({"end_time": "17:00"}, {"adults", "young"}),
            ({"day": "SA", "start_time": "09:00", "end_time": "13:00"}, {"young"}),
            ({"day": "MO", "end_time": "13:00"}, set()),
        ]
        by_id = {oruk_id("service", s["id"]): name for name, s in made.items()}
        failures = []
        for given, expected in cases:
            for path in ("/oruk/services", "/oruk/service_at_locations"):
                r = await directory_client.get(
                    path, params={"organization_id": org_id, "per_page": 100, **given}
                )
                assert r.status_code in (200, 404), r.text
                key = "id" if path == "/oruk/services" else "service_id"
                got = {by_id[c[key]] for c in r.json().get("contents", [])}
                if got != expected:
                    failures.append(f"{path} {given}: {sorted(got)} != {sorted(expected)}")
        assert not failures, "\n".join(failures)

    @pytest.mark.parametrize(
        "given",
        [
            {"minimum_age": "adult"},
            {"maximum_age": "-1"},
            {"day": "funday"},
            {"start_time": "25:00"},
            {"end_time": "5pm"},
            {"minimum_age": "40", "maximum_age": "30"},
            {"per_page": "many"},
            {"page": "0"},
            {"full": "perhaps"},
            {"modified_after": "yesterday"},
            {"taxonomy_id": "not an id!"},
        ],
    )
    async def test_a_bad_filter_is_a_400_problem(
        self, directory_client: httpx.AsyncClient, given: dict[str, str]
    ) -> None:
        only_services = "full" in given  # the profile's service_at_locations has no `full`
        for path in ("/oruk/services", "/oruk/service_at_locations")[: 1 if only_services else 2]:
            r = await directory_client.get(path, params=given)
            assert r.status_code == 400, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert next(iter(given)) in r.json()["detail"]

    @pytest.mark.parametrize(
        "given",
        [{"postcode": "not a postcode"}, {"proximity": "far"}, {"proximity": "500"}],
    )
    async def test_a_bad_place_is_a_400_problem(
        self, directory_client: httpx.AsyncClient, given: dict[str, str]
    ) -> None:
        r = await directory_client.get("/oruk/service_at_locations", params=given)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"


class TestPublicAccess:
    async def test_the_feed_needs_no_token_by_default(
        self, directory_client: httpx.AsyncClient
    ) -> None:
        for path in ("/oruk/", "/oruk/services", "/oruk/service_at_locations", "/oruk/taxonomies"):
            r = await directory_client.get(path)
            assert r.status_code == 200, (path, r.text)

    async def test_the_public_feed_shows_published_services_only(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        draft = await create(directory_client, p)
        live = await create_published(directory_client, p)
        for sid in (draft["id"], oruk_id("service", draft["id"])):
            assert (await directory_client.get(f"/oruk/services/{sid}")).status_code == 404
        for path, key in (("/oruk/services", "id"), ("/oruk/service_at_locations", "service_id")):
            page = _ok(
                await directory_client.get(
                    path, params={"organization_id": draft["organization_id"]}
                )
            )
            assert {c[key] for c in page["contents"]} == {oruk_id("service", live["id"])}

    async def test_the_feed_is_read_only(self, directory_client: httpx.AsyncClient) -> None:
        r = await directory_client.post("/oruk/services", json={})
        assert r.status_code == 405

    async def test_an_ics_can_turn_the_public_feed_off(
        self, directory_client: httpx.AsyncClient, settings: Settings, app_settings: Any
    ) -> None:
        app_settings.settings = app_settings.settings.model_copy(update={"oruk_public": False})
        for path in ("/oruk/", "/oruk/services", f"/oruk/taxonomies/{CATEGORY_TAXONOMY.id}"):
            r = await directory_client.get(path)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        h = auth(settings, role="partner", org="LA-1")
        assert (await directory_client.get("/oruk/services", headers=h)).status_code == 200

    async def test_the_public_feed_is_rate_limited_per_client_address(
        self, directory_client: httpx.AsyncClient, app_settings: Any
    ) -> None:
        app_settings.settings = app_settings.settings.model_copy(
            update={"oruk_rate_limit_per_minute": 1, "oruk_rate_limit_burst": 3}
        )
        app_settings.oruk_buckets = None  # a fresh limiter with the new allowance
        try:
            codes = [(await directory_client.get("/oruk/")).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            r = await directory_client.get("/oruk/")
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["Retry-After"]) >= 1
        finally:
            app_settings.oruk_buckets = None


class TestTheDemoDirectory:
    def test_every_demo_service_as_the_feed_shows_it_passes_the_profile(self) -> None:
        """The 85 services `waymark seed` loads (slugs and all), recorded as the directory
        records them and rendered as the feed serves them: 0 errors against the profile."""
        from datetime import UTC, datetime

        from services.directory.data.generate_postcodes import read as read_postcodes
        from services.directory.demo import _fix_postcodes, demo_services, service_body
        from services.directory.domain import organization_id_for
        from services.directory.models import Organization
        from services.directory.oruk import mapping
        from services.directory.oruk.render import render
        from services.directory.schemas import ServiceCreate

        coords = {p[0]: (p[1], p[2]) for p in read_postcodes()}
        now = datetime.now(UTC)
        services = _fix_postcodes(demo_services())
        assert len(services) >= 80
        failures = {}
        for s in services:
            org = Organization(
                id=organization_id_for(s.org),
                org_code=s.org,
                ics="ICS-1",
                name=f"Provider {s.org}",
                identifiers=[],
                version=1,
                created_at=now,
                updated_at=now,
            )
            cmd = ServiceCreate.model_validate(service_body(s, coords))
            record = mapping.from_create(cmd, service_id=s.id, org=org, geocode=coords)
            record = record.model_copy(update={"organization": mapping.organization_to_oruk(org)})
            body = render(record.model_dump(mode="json", exclude_none=True), "service")
            assert body["id"] == oruk_id("service", s.id)
            if errors := profile.errors("compiled/service.json", body):
                failures[s.id] = errors[:3]
        assert not failures, failures
