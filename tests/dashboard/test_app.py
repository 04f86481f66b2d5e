"""The dashboard as an app (app.py, errors.py): every page's security headers, the stylesheet
and script and nothing else, unknown addresses and bad values as error pages, and the
notifications API's live stream opened by the dashboard's session cookie.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import asyncio

import httpx

from tests.dashboard.page_support import landing, sign_in
from tests.notifications.alert_support import sse_events


class TestPagesAreSafe:
    async def test_pages_carry_a_strict_content_security_policy_and_no_caching(self, web, settings):
        await sign_in(web)
        resp = await web.get("/dashboard/alerts")
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        # forms post here, and signing out's answer goes on to the identity provider only
        assert f"form-action 'self' {settings.issuer};" in resp.headers["content-security-policy"]
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["x-content-type-options"] == "nosniff"

    async def test_the_stylesheet_and_script_are_served_and_nothing_else(self, web):
        css = await web.get("/dashboard/static/dashboard.css")
        js = await web.get("/dashboard/static/dashboard.js")
        assert css.status_code == js.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert js.headers["content-type"].startswith("text/javascript")
        again = await web.get(
            "/dashboard/static/dashboard.css", headers={"If-None-Match": css.headers["etag"]}
        )
        assert again.status_code == 304
        for bad in ("../api.py", "..%2Froutes.py", "dashboard.py", "x.css"):
            resp = await web.get(f"/dashboard/static/{bad}")
            assert resp.status_code == 404, bad

    async def test_an_unknown_dashboard_address_is_a_404_page(self, web):
        await sign_in(web)
        resp = await web.get("/dashboard/no/such/page")
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
        assert "<h1>Page not found</h1>" in resp.text

    async def test_a_bad_value_in_the_address_is_a_422_page_not_an_error(self, web):
        await sign_in(web)
        for path in (
            "/dashboard/alerts?kind=nonsense",
            "/dashboard/alerts?page=0",
            "/dashboard/alerts?assignee=" + "x" * 301,
            "/dashboard/overview?months=0",
            "/dashboard/alerts?assignee=no%20spaces",
        ):
            resp = await web.get(path)
            assert resp.status_code == 422, (path, resp.status_code)
            assert "<h1>Check what you entered</h1>" in resp.text


class TestLiveStream:
    async def test_the_running_api_streams_to_the_session_cookie(self, running_apps):
        # a real server (the instance's notifications-api process): the stream never ends
        async with httpx.AsyncClient(
            base_url=running_apps.api_url("notifications"), timeout=30
        ) as http:
            assert landing(await sign_in(http)) == "/dashboard/alerts"
            async with http.stream("GET", "/alerts/stream") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                ready = await asyncio.wait_for(anext(sse_events(resp)), 30)
        assert ready.event == "ready"

    async def test_without_a_session_the_stream_is_refused(self, web):
        resp = await web.get("/alerts/stream")
        assert resp.status_code == 401
        web.cookies.set("waymark_session", "forged", domain="dashboard.test")
        resp = await web.get("/alerts/stream")
        assert resp.status_code == 401
