"""Directory search on the real PostgreSQL: relevance, distance and radius, filters, paging,
and the 4xx answers to bad input. Every search names the test's own organisations
(org_code), so services made by other tests never appear."""

from __future__ import annotations

import math
from datetime import time
from typing import Any

import httpx

from services.directory import search as search_rules
from services.directory.domain import MINUTES_PER_DAY
from shared.errors import PROBLEM_JSON
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import (
    CENTRE_POSTCODE,
    Provider,
    at,
    create,
    create_published,
    new_provider,
)

EARTH_RADIUS_M = 6378168  # earthdistance's earth() radius


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h)) / 1000


def offset(
    origin: tuple[float, float], *, north_km: float = 0, east_km: float = 0
) -> tuple[float, float]:
    lat = origin[0] + north_km / (EARTH_RADIUS_M / 1000 * math.pi / 180)
    lon = origin[1] + east_km / (
        EARTH_RADIUS_M / 1000 * math.pi / 180 * math.cos(math.radians(origin[0]))
    )
    return round(lat, 6), round(lon, 6)


async def search(
    client: httpx.AsyncClient, s: Settings, *orgs: Provider, **params: Any
) -> dict[str, Any]:
    r = await client.get(
        "/services",
        params={"org_code": [p.code for p in orgs], **params},
        headers=auth(s, role="clinician", org="GP-A81001"),
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def ids(page: dict[str, Any]) -> list[str]:
    return [h["id"] for h in page["results"]]


class TestRelevance:
    async def test_back_pain_low_mood_ranks_services_for_both_conditions_first(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        both_tt = await create_published(
            directory_client,
            p,
            name="Talking therapies for long-term conditions",
            description="Six sessions with a therapist, by video or in person.",
            category="talking_therapies_ltc",
            conditions=["persistent_pain", "mental_health"],
            delivery_modes=["video"],
            locations=[],
        )
        both_pmp = await create_published(
            directory_client,
            p,
            name="Living well programme",
            description="An eight week group programme.",
            category="pain_management_programme",
            conditions=["persistent_pain", "mental_health"],
        )
        # single-condition services that say their own words loudly
        pain_only = await create_published(
            directory_client,
            p,
            name="Back pain clinic",
            description="Back pain assessment. Back pain exercises. Pain, pain, pain relief.",
            category="msk_physiotherapy",
            conditions=["persistent_pain"],
        )
        mood_only = await create_published(
            directory_client,
            p,
            name="Low mood group",
            description="A group for low mood: mood diaries and low mood skills.",
            category="peer_support",
            conditions=["mental_health"],
        )
        unrelated = await create_published(
            directory_client,
            p,
            name="Carers' café",
            description="Tea and a chat.",
            category="carers_support",
            conditions=["persistent_pain"],
            delivery_modes=["group", "in_person"],
        )

        page = await search(directory_client, settings, p, q="back pain low mood")
        order = ids(page)
        assert page["sort"] == "relevance"
        assert set(order[:2]) == {both_tt["id"], both_pmp["id"]}, page
        assert set(order[2:4]) == {pain_only["id"], mood_only["id"]}
        scores = {h["id"]: h["score"] for h in page["results"]}
        assert min(scores[both_tt["id"]], scores[both_pmp["id"]]) > max(
            scores[pain_only["id"]], scores[mood_only["id"]]
        )
        # the carers' service serves persistent pain, so it matches "back pain" by its terms
        assert order[-1] == unrelated["id"] or unrelated["id"] not in order

    async def test_text_finds_by_name_description_and_taxonomy_terms(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        yoga = await create_published(
            directory_client,
            p,
            name="Gentle movement",
            description="Chair-based sessions.",
            category="exercise_yoga",
        )
        other = await create_published(
            directory_client,
            p,
            name="Benefits advice",
            description="Help with forms.",
            category="social_prescribing",
        )
        assert ids(await search(directory_client, settings, p, q="yoga")) == [yoga["id"]]
        assert ids(await search(directory_client, settings, p, q="chairs")) == [yoga["id"]]
        assert ids(await search(directory_client, settings, p, q="forms")) == [other["id"]]
        assert ids(await search(directory_client, settings, p, q="zzzunknownword")) == []


class TestDistance:
    async def test_nearest_first_and_the_radius_cuts_off(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        origin = (53.700000, -1.950000)
        placed = {}
        for name, north, east in [
            ("one-north", 1, 0),
            ("three-east", 0, 3),
            ("seven-south", -7, 0),
            ("twelve-west", 0, -12),
        ]:
            point = offset(origin, north_km=north, east_km=east)
            placed[name] = (
                (await create_published(directory_client, p, name=name, locations=[at(*point)]))[
                    "id"
                ],
                point,
            )
        page = await search(
            directory_client, settings, p, latitude=origin[0], longitude=origin[1], radius_km=8
        )
        assert page["sort"] == "distance"
        assert ids(page) == [placed[n][0] for n in ("one-north", "three-east", "seven-south")]
        for hit in page["results"]:
            name = hit["name"]
            expected = great_circle_km(origin, placed[name][1])
            assert math.isclose(hit["distance_km"], expected, rel_tol=1e-3), (name, hit)
            assert hit["nearest_location"]["latitude"] == placed[name][1][0]
        wide = await search(
            directory_client, settings, p, latitude=origin[0], longitude=origin[1], radius_km=12.5
        )
        assert ids(wide)[-1] == placed["twelve-west"][0]

    async def test_the_cut_off_is_exact_at_the_boundary(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        origin = (53.71, -1.90)
        point = offset(origin, north_km=3, east_km=4)
        sid = (await create_published(directory_client, p, locations=[at(*point)]))["id"]
        d = great_circle_km(origin, point)
        near = dict(latitude=origin[0], longitude=origin[1])
        assert (
            ids(await search(directory_client, settings, p, radius_km=round(d - 0.01, 3), **near))
            == []
        )
        assert ids(
            await search(directory_client, settings, p, radius_km=round(d + 0.01, 3), **near)
        ) == [sid]

    async def test_a_service_with_many_locations_appears_once_at_its_nearest(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        origin = (53.69, -1.99)
        far, close = offset(origin, north_km=9), offset(origin, east_km=-2)
        s = await create_published(
            directory_client,
            p,
            locations=[at(*far, name="far clinic"), at(*close, name="close clinic")],
        )
        page = await search(
            directory_client, settings, p, latitude=origin[0], longitude=origin[1], radius_km=20
        )
        assert ids(page) == [s["id"]]
        assert page["results"][0]["nearest_location"]["name"] == "close clinic"
        assert math.isclose(page["results"][0]["distance_km"], 2.0, rel_tol=1e-3)

    async def test_a_postcode_is_the_origin(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        # the same place as the postcode's centroid (WY1 0BG: 53.709534, -1.931754)
        s = await create_published(directory_client, p, locations=[at(53.709534, -1.931754)])
        page = await search(directory_client, settings, p, postcode="wy1 0bg", radius_km=1)
        assert ids(page) == [s["id"]] and page["results"][0]["distance_km"] == 0
        assert page["origin"]["postcode"] == CENTRE_POSTCODE

    async def test_remote_services_join_a_nearby_search_only_when_asked(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        local = await create_published(directory_client, p, locations=[at(53.70, -1.95)])
        online = await create_published(
            directory_client, p, name="Online course", delivery_modes=["video"], locations=[]
        )
        near = dict(latitude=53.70, longitude=-1.95, radius_km=5)
        assert ids(await search(directory_client, settings, p, **near)) == [local["id"]]
        page = await search(directory_client, settings, p, include_remote="true", **near)
        assert ids(page) == [local["id"], online["id"]]  # no distance sorts last
        assert page["results"][1]["distance_km"] is None


def oracle(services: list[dict[str, Any]], **f: Any) -> set[str]:
    """What each filter means, written out in Python over the bodies the services were made
    from: conditions and communication support all-of, categories and modes any-of."""
    out = set()
    for s in services:
        costs = [c["amount"] for c in s.get("cost_options", [])]
        free = not any(a > 0 for a in costs)
        days = {d for sch in s.get("schedules", []) for d in sch["byday"]}
        if "condition" in f and not set(f["condition"]) <= set(s["conditions"]):
            continue
        if "category" in f and s["category"] not in f["category"]:
            continue
        if "delivery_mode" in f and not set(f["delivery_mode"]) & set(s["delivery_modes"]):
            continue
        if "communication_support" in f and not set(f["communication_support"]) <= set(
            s.get("communication_support", [])
        ):
            continue
        if "self_referral" in f and s.get("self_referral", False) != f["self_referral"]:
            continue
        if "free" in f and free != f["free"]:
            continue
        if "open_day" in f:
            if "open_at" not in f and f["open_day"] not in days:
                continue
            if "open_at" in f and not any(
                f["open_day"] in sch["byday"]
                and sch.get("opens_at", "00:00")
                <= f["open_at"]
                < sch.get("closes_at", "24:00")  # no times: all day
                for sch in s.get("schedules", [])
            ):
                continue
        if "age" in f and not (s.get("minimum_age", 0) <= f["age"] <= s.get("maximum_age", 200)):
            continue
        out.add(s["id"])
    return out


class TestFilters:
    async def test_filters_combine_as_documented(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        evening = {"byday": ["TU", "TH"], "opens_at": "17:00", "closes_at": "20:00"}
        daytime = {"byday": ["MO", "TU", "WE"], "opens_at": "09:00", "closes_at": "16:30"}
        variants = [
            dict(
                category="peer_support",
                conditions=["persistent_pain"],
                self_referral=True,
                delivery_modes=["group", "in_person"],
                schedules=[evening],
            ),
            dict(
                category="peer_support",
                conditions=["mental_health"],
                self_referral=False,
                delivery_modes=["video"],
                locations=[],
                communication_support=["bsl"],
                schedules=[daytime],
            ),
            dict(
                category="exercise_yoga",
                conditions=["persistent_pain", "mental_health"],
                self_referral=True,
                delivery_modes=["in_person"],
                cost_options=[{"amount": 5, "amount_description": "per class"}],
                schedules=[daytime, evening],
                minimum_age=18,
            ),
            dict(
                category="talking_therapies_ltc",
                conditions=["persistent_pain", "mental_health"],
                delivery_modes=["phone"],
                locations=[],
                communication_support=["bsl", "interpreters", "easy_read"],
                minimum_age=16,
                maximum_age=25,
            ),
            dict(
                category="vocational_rehabilitation",
                conditions=["persistent_pain"],
                self_referral=True,
                delivery_modes=["phone", "video"],
                locations=[],
                communication_support=["interpreters"],
                cost_options=[{"amount": 0}],
            ),
            dict(
                category="crisis",
                conditions=["mental_health"],
                self_referral=True,
                delivery_modes=["phone"],
                locations=[],
                minimum_age=18,
                schedules=[{"byday": ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]}],
            ),
        ]
        bodies = []
        for v in variants:
            created = await create_published(directory_client, p, **v)
            bodies.append({**v, "id": created["id"]})
        combos: list[dict[str, Any]] = [
            {},
            dict(category=["peer_support", "exercise_yoga"], self_referral=True),
            dict(condition=["persistent_pain", "mental_health"], free=True),
            dict(condition=["mental_health"], self_referral=True),
            dict(delivery_mode=["video", "phone"], communication_support=["bsl"]),
            dict(communication_support=["interpreters", "easy_read"]),
            dict(open_day="TU", open_at="18:30"),
            dict(open_day="WE"),
            dict(open_day="SU", open_at="03:00"),
            dict(age=17),
            dict(age=30, free=False),
            dict(
                category=["crisis", "peer_support", "vocational_rehabilitation"],
                delivery_mode=["phone"],
                self_referral=True,
                age=40,
            ),
        ]
        outcomes = set()
        for combo in combos:
            params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in combo.items()}
            page = await search(directory_client, settings, p, page_size=50, **params)
            expected = oracle(bodies, **combo)
            assert set(ids(page)) == expected, combo
            assert page["total_items"] == len(page["results"])
            outcomes.add(frozenset(expected))
        assert len(outcomes) >= 8  # the combinations really tell the services apart

    async def test_drafts_and_withdrawn_services_are_not_found(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        await create(directory_client, p)
        gone = await create_published(directory_client, p)
        kept = await create_published(directory_client, p)
        await directory_client.post(
            f"/services/{gone['id']}/withdraw", headers=p.headers, json={"reason": "service_closed"}
        )
        assert ids(await search(directory_client, settings, p)) == [kept["id"]]


class TestPaging:
    async def test_pages_cover_everything_once_and_beyond_the_end_is_404(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        made = [
            (await create_published(directory_client, p, name=f"Service {n}"))["id"]
            for n in range(5)
        ]
        pages = [
            await search(directory_client, settings, p, page=n, page_size=2) for n in (1, 2, 3)
        ]
        seen = [i for page in pages for i in ids(page)]
        assert seen == made  # sorted by name without text or place
        assert {(pg["total_items"], pg["total_pages"]) for pg in pages} == {(5, 3)}
        r = await directory_client.get(
            "/services",
            params={"org_code": p.code, "page": 4, "page_size": 2},
            headers=auth(settings, role="clinician", org="GP-1"),
        )
        assert r.status_code == 404 and "beyond the last page (3)" in r.json()["detail"]


class TestBadInput:
    async def test_each_mistake_gets_a_clear_4xx(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        h = auth(settings, role="coordinator", org="ICB-1")
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"postcode": "W1A"}, 422, "not a UK postcode"),
            ({"postcode": "QQ1 1AA"}, 422, "not a UK postcode"),
            ({"postcode": "WY99 9ZZ"}, 422, "not in the directory's postcode table"),
            ({"category": "acupuncture"}, 422, "category"),
            ({"condition": "back"}, 422, "condition"),
            ({"postcode": CENTRE_POSTCODE, "radius_km": 0}, 422, "radius_km"),
            ({"postcode": CENTRE_POSTCODE, "radius_km": 500}, 422, "radius_km"),
            ({"radius_km": 5}, 422, "radius_km needs a place"),
            ({"latitude": 53.7}, 422, "both latitude and longitude"),
            ({"latitude": 91, "longitude": 0}, 422, "latitude"),
            ({"postcode": CENTRE_POSTCODE, "latitude": 53.7, "longitude": -1.9}, 422, "not both"),
            ({"sort": "distance"}, 422, "needs a place"),
            ({"sort": "relevance"}, 422, "needs search text"),
            ({"open_at": "10:00"}, 422, "open_at needs open_day"),
            ({"open_day": "funday"}, 422, "open_day"),
            ({"catgory": "crisis"}, 422, "unknown search parameter(s): catgory"),
            ({"page": 0}, 422, "page"),
            ({"page_size": 101}, 422, "page_size"),
            ({"org_code": "has space"}, 422, "org_code"),
            ({"q": "x" * 201}, 422, "q"),
        ]
        for params, status, words in cases:
            r = await directory_client.get("/services", params=params, headers=h)
            assert r.status_code == status, (params, r.text)
            assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
            assert words in r.json()["detail"], (params, r.json()["detail"])


class TestSearchValidation:
    def build(self, **kw: object) -> search_rules.SearchQuery:
        base: dict[str, object] = dict(
            text=None, conditions=(), categories=(), delivery_modes=(), communication_support=()
        )
        base.update(kw)
        return search_rules.build_search(**base)  # type: ignore[arg-type]

    def test_default_sort_follows_what_was_asked(self) -> None:
        here = search_rules.Origin(53.7, -1.9)
        assert self.build().sort is search_rules.SortOrder.NAME
        assert self.build(origin=here).sort is search_rules.SortOrder.DISTANCE
        assert self.build(text="pain", origin=here).sort is search_rules.SortOrder.RELEVANCE
        assert self.build(text="  back   pain ").text == "back pain"

    def test_open_window(self) -> None:
        q = self.build(open_day="tuesday", open_at=time(18, 30))
        day = MINUTES_PER_DAY
        assert q.open_minutes() == (day + 18 * 60 + 30, day + 18 * 60 + 31)
        assert self.build(open_day="SU").open_minutes() == (6 * day, 7 * day)
