"""The ICS leads' overview (pages/overview.py): figures, charts and tables for leads and
coordinators, a 403 page for other roles.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

from tests.dashboard.page_support import sign_in


class TestOverviewPage:
    async def test_ics_leads_and_coordinators_see_figures_charts_and_tables(self, web, journey):
        for user in ("demo-lee", "demo-casey"):
            await sign_in(web, user)
            page = await web.get("/dashboard/overview?months=6")
            assert page.status_code == 200, page.text
            assert "<h1>Overview</h1>" in page.text
            assert 'aria-labelledby="by-month-title by-month-desc"' in page.text
            assert 'aria-labelledby="by-category-title by-category-desc"' in page.text
            assert 'id="table-by-month"' in page.text and 'id="table-by-category"' in page.text
            assert "Median days to triage" in page.text
            assert page.text.count('<th scope="row">') >= 6  # a row per month at least

    async def test_other_roles_get_a_403_page(self, web):
        await sign_in(web, "demo-sam")
        resp = await web.get("/dashboard/overview")
        assert resp.status_code == 403 and "coordinators and leads" in resp.text
