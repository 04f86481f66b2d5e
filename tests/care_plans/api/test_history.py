"""The care plans API on the real PostgreSQL: every change a new immutable version, any two
compared, If-Match, and clear 4xx with nothing half-written.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db import unit_of_work
from shared.settings import Settings
from tests.care_plans.support import (
    World,
    create_plan,
    outbox_of,
    plan_content,
    query,
)


class TestVersions:
    async def test_every_change_is_a_new_immutable_version_and_any_two_compare(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        pid = plan["id"]
        content = plan_content(what_matters_to_me="Sleeping through the night.")
        r = await care_plans_client.put(
            f"/care-plans/{pid}",
            json={"content": content, "reason": "review"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == 'W/"2"' and r.json()["reason"] == "review"
        # a consented organisation adds a goal
        goals = [
            *content["goals"],
            {"id": "sleep", "what": "Sleep 6 hours", "owner": "person", "status": "proposed"},
        ]
        r = await care_plans_client.put(
            f"/care-plans/{pid}",
            json={"content": {**content, "goals": goals}, "reason": "pain clinic"},
            headers={**w.as_(w.consented), "If-Match": 'W/"2"'},
        )
        assert r.status_code == 200, r.text

        versions = (
            await care_plans_client.get(f"/care-plans/{pid}/versions", headers=w.holder_h())
        ).json()
        assert [(v["version"], v["author_org"], v["reason"]) for v in versions] == [
            (1, w.holder, "first conversation"),
            (2, w.holder, "review"),
            (3, w.consented, "pain clinic"),
        ]
        current = await care_plans_client.get(f"/care-plans/{pid}", headers=w.holder_h())
        assert current.json()["version"] == 3 and current.headers["etag"] == 'W/"3"'
        old = (
            await care_plans_client.get(f"/care-plans/{pid}/versions/1", headers=w.holder_h())
        ).json()
        assert old["content"]["what_matters_to_me"].startswith("Getting back")

        d = (
            await care_plans_client.get(f"/care-plans/{pid}/diff?from=1&to=3", headers=w.holder_h())
        ).json()
        assert d["changes"] == [
            {
                "op": "added",
                "path": "/goals/1",
                "before": None,
                "after": {
                    "id": "sleep",
                    "what": "Sleep 6 hours",
                    "by_when": None,
                    "owner": "person",
                    "owner_name": None,
                    "status": "proposed",
                },
            },
            {
                "op": "changed",
                "path": "/what_matters_to_me",
                "before": plan["content"]["what_matters_to_me"],
                "after": "Sleeping through the night.",
            },
        ]
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert [
            r.payload["data"].get("version")
            for r in rows
            if r.event_type == "uk.waymark.care-plan.updated"
        ] == [2, 3]
        # the database refuses to rewrite history
        with pytest.raises(Exception, match="immutable"):
            async with unit_of_work(care_plans_sessions) as s:
                await s.exec(
                    __import__("sqlalchemy")
                    .text(  # type: ignore[call-overload]
                        "UPDATE care_plan_version SET reason = 'x' WHERE plan_id = :p"
                    )
                    .bindparams(p=pid)
                )

    async def test_a_stale_if_match_is_412_and_nothing_is_written(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        body = {"content": plan_content(), "reason": "x"}
        ok = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers={**w.holder_h(), "If-Match": 'W/"1"'}
        )
        assert ok.status_code == 200
        stale = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers={**w.holder_h(), "If-Match": 'W/"1"'}
        )
        assert stale.status_code == 412 and stale.json()["current_version"] == 2
        missing = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers=w.holder_h()
        )
        assert missing.status_code == 428
        assert (
            len(
                await query(
                    care_plans_sessions,
                    "SELECT 1 FROM care_plan_version WHERE plan_id = :p",
                    p=plan["id"],
                )
            )
            == 2
        )

    async def test_a_version_that_does_not_exist_is_404(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.get(
            f"/care-plans/{plan['id']}/diff?from=1&to=9", headers=w.holder_h()
        )
        assert r.status_code == 404
