"""Referrals as the referrals API shows them to the user (pages/referrals.py): one referral
with its history, 404 pages for referrals you may not see, and the triage worklist.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from tests.conftest import auth
from tests.dashboard.page_support import EVIL, sign_in


class TestReferralPage:
    async def test_it_shows_the_person_the_referral_and_its_history(self, web, journey):
        await sign_in(web)
        page = await web.get(
            f"/dashboard/referrals/{journey.first['id']}?alert={quote(journey.alert_id, safe='')}"
        )
        assert page.status_code == 200, page.text
        assert journey.first["id"] in page.text and f"Robin {journey.family}" in page.text
        nhs = journey.first["nhs_number"]
        assert f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}" in page.text
        assert "does-not-meet-criteria" in page.text and "Not accepted" in page.text
        assert EVIL not in page.text and "&lt;script&gt;" in page.text
        assert f'href="/dashboard/alerts/{quote(journey.alert_id, safe="")}"' in page.text

    async def test_a_referral_you_may_not_see_is_a_404_page(self, web, journey, settings):
        resp = await web.get(
            f"/dashboard/referrals/{journey.first['id']}",
            headers=auth(settings, role="clinician", org="GP-OTHER"),
        )
        assert resp.status_code == 404 and "that you may see" in resp.text
        await sign_in(web)
        for rid in ("not-a-uuid", "x..y", str(uuid.uuid4())):
            resp = await web.get(f"/dashboard/referrals/{rid}")
            assert resp.status_code == 404, rid


class TestWorklistPage:
    async def test_service_staff_see_what_waits_for_triage(self, web, journey):
        await sign_in(web, "demo-sam")
        page = await web.get("/dashboard/worklist")
        assert page.status_code == 200, page.text
        assert journey.again["id"] in page.text and f"Robin {journey.family}" in page.text
        assert f'href="/dashboard/referrals/{journey.again["id"]}"' in page.text

    async def test_coordinators_get_a_403_page_and_bad_states_a_422(self, web, journey):
        await sign_in(web)
        resp = await web.get("/dashboard/worklist")
        assert resp.status_code == 403 and "receiving service" in resp.text
        await sign_in(web, "demo-sam")
        resp = await web.get("/dashboard/worklist?state=nonsense")
        assert resp.status_code == 422
