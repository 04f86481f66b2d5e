"""The identifiers other systems use for a directory service (an e-RS service id, a shared
care record's HealthcareService identifier), on the real database: set by the service's own
organisation, one service per system + value, found by GET /service-identifiers (published
and withdrawn services, never drafts), audited; bad input a 4xx problem."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import create, create_published, new_provider, query

ERS = "https://fhir.nhs.uk/Id/ers-service"


def code() -> str:
    return str(uuid.uuid4().int % 10**9)


async def put_ids(
    client: httpx.AsyncClient, service_id: str, headers: dict[str, str], *ids: tuple[str, str]
) -> httpx.Response:
    return await client.put(
        f"/services/{service_id}/identifiers",
        json={"identifiers": [{"system": s, "value": v} for s, v in ids]},
        headers=headers,
    )


async def find(client: httpx.AsyncClient, s: Settings, system: str, value: str) -> Any:
    r = await client.get(
        "/service-identifiers",
        params={"system": system, "value": value},
        headers=auth(s, role="clinician", org="GP-X"),
    )
    assert r.status_code == 200, r.text
    return r.json()


class TestIdentifiers:
    async def test_set_read_and_find(
        self,
        directory_client: httpx.AsyncClient,
        directory_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        p = await new_provider(directory_client, settings)
        svc = await create_published(directory_client, p)
        c1, c2 = code(), code()
        r = await put_ids(directory_client, svc["id"], p.headers, (ERS, c1), ("urn:oid:1.2.3", c2))
        assert r.status_code == 200, r.text
        got = await directory_client.get(
            f"/services/{svc['id']}/identifiers", headers=auth(settings, role="clinician", org="X")
        )
        assert got.json() == {
            "service_id": svc["id"],
            "identifiers": sorted(
                [{"system": ERS, "value": c1}, {"system": "urn:oid:1.2.3", "value": c2}],
                key=lambda i: (i["system"], i["value"]),
            ),
        }
        [hit] = await find(directory_client, settings, ERS, c1)
        assert hit == {
            "system": ERS,
            "value": c1,
            "service_id": svc["id"],
            "org_code": p.code,
            "category": svc["category"],
            "status": "active",
        }
        audit = await query(
            directory_sessions,
            "SELECT * FROM audit_log WHERE resource_id = :r AND resource_type = :t",
            r=svc["id"],
            t="ServiceIdentifiers",
        )
        assert len(audit) == 1 and audit[0].actor == p.user

    async def test_a_put_replaces_the_list(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        svc = await create_published(directory_client, p)
        old, new = code(), code()
        await put_ids(directory_client, svc["id"], p.headers, (ERS, old))
        r = await put_ids(directory_client, svc["id"], p.headers, (ERS, new))
        assert r.json()["identifiers"] == [{"system": ERS, "value": new}]
        assert await find(directory_client, settings, ERS, old) == []
        assert [h["service_id"] for h in await find(directory_client, settings, ERS, new)] == [
            svc["id"]
        ]
        cleared = await put_ids(directory_client, svc["id"], p.headers)
        assert cleared.json()["identifiers"] == []
        assert await find(directory_client, settings, ERS, new) == []

    async def test_an_identifier_names_one_service(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        q = await new_provider(directory_client, settings)
        a = await create_published(directory_client, p)
        b = await create_published(directory_client, q)
        c = code()
        assert (await put_ids(directory_client, a["id"], p.headers, (ERS, c))).status_code == 200
        r = await put_ids(directory_client, b["id"], q.headers, (ERS, c))
        assert r.status_code == 409, r.text
        assert a["id"] in r.json()["detail"]
        # the same value in another system is another identifier
        assert (
            await put_ids(directory_client, b["id"], q.headers, ("urn:oid:9.9", c))
        ).status_code == 200

    async def test_a_draft_is_never_found_and_only_its_managers_see_it(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        draft = await create(directory_client, p)
        c = code()
        assert (
            await put_ids(directory_client, draft["id"], p.headers, (ERS, c))
        ).status_code == 200
        assert await find(directory_client, settings, ERS, c) == []
        other = auth(settings, role="clinician", org="GP-Y")
        r = await directory_client.get(f"/services/{draft['id']}/identifiers", headers=other)
        assert r.status_code == 404

    async def test_a_withdrawn_service_is_still_found(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """A referral naming it must hear it is withdrawn, not that the code is unknown."""
        p = await new_provider(directory_client, settings)
        svc = await create_published(directory_client, p)
        c = code()
        await put_ids(directory_client, svc["id"], p.headers, (ERS, c))
        w = await directory_client.post(
            f"/services/{svc['id']}/withdraw",
            json={"reason": "service_closed"},
            headers=p.headers,
        )
        assert w.status_code == 200, w.text
        [hit] = await find(directory_client, settings, ERS, c)
        assert hit["service_id"] == svc["id"]

    @pytest.mark.parametrize("role", ["clinician", "coordinator", "partner", "service_staff"])
    async def test_only_the_services_own_organisation_sets_them(
        self, directory_client: httpx.AsyncClient, settings: Settings, role: str
    ) -> None:
        p = await new_provider(directory_client, settings)
        svc = await create_published(directory_client, p)
        outsider = auth(settings, role=role, org=f"OTHER-{uuid.uuid4().hex[:6]}")
        r = await put_ids(directory_client, svc["id"], outsider, (ERS, code()))
        assert r.status_code == 403, r.text

    async def test_an_unknown_service_is_a_404(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        r = await put_ids(directory_client, "svc-nope-" + code(), p.headers, (ERS, code()))
        assert r.status_code == 404, r.text

    @pytest.mark.parametrize(
        "body, word",
        [
            ({"identifiers": [{"system": "ers", "value": "1"}]}, "system"),
            ({"identifiers": [{"system": "https://x.example/id", "value": ""}]}, "value"),
            ({"identifiers": [{"system": "https://x.example/id", "value": "a b"}]}, "value"),
            ({"identifiers": [{"system": "https://x.example/id", "value": "1" * 65}]}, "value"),
            ({"identifiers": [{"system": "https://x.example/ id", "value": "1"}]}, "system"),
            ({"identifiers": [{"system": ERS, "value": "1"}] * 2}, "once"),
            ({"identifiers": [{"system": ERS, "value": str(i)} for i in range(21)]}, "identifiers"),
            ({"identifiers": [{"system": ERS, "value": "1", "use": "official"}]}, "use"),
            ({"identifiers": "1"}, "identifiers"),
            ({}, "identifiers"),
        ],
        ids=[
            "system-not-a-uri",
            "value-empty",
            "value-space",
            "value-too-long",
            "system-space",
            "duplicate",
            "too-many",
            "extra-field",
            "not-a-list",
            "missing",
        ],
    )
    async def test_bad_identifiers_are_a_422(
        self, directory_client: httpx.AsyncClient, settings: Settings, body: Any, word: str
    ) -> None:
        p = await new_provider(directory_client, settings)
        svc = await create_published(directory_client, p)
        r = await directory_client.put(
            f"/services/{svc['id']}/identifiers", json=body, headers=p.headers
        )
        assert r.status_code == 422, r.text
        assert word in r.text

    @pytest.mark.parametrize(
        "params",
        [{}, {"system": ERS}, {"value": "1"}, {"system": "x", "value": "1"}],
        ids=["none", "no-value", "no-system", "bad-system"],
    )
    async def test_a_lookup_needs_a_system_and_a_value(
        self, directory_client: httpx.AsyncClient, settings: Settings, params: dict[str, str]
    ) -> None:
        r = await directory_client.get(
            "/service-identifiers", params=params, headers=auth(settings, role="clinician", org="X")
        )
        assert r.status_code == 422, r.text
