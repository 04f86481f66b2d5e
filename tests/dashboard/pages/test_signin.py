"""The dashboard's sign-in (pages/signin.py): a button per demo user, the session cookie and
where each role lands, returning only to dashboard pages, the login redirect and the 401 for
the script, the login form's own token, signing out, and no dev sign-in in production.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.notifications.api import app
from shared.auth import mint_token
from shared.settings import Settings
from tests.dashboard.page_support import LOGIN_CSRF, csrf_of, sign_in
from tests.notifications.alert_support import coordinator as coordinator_auth


class TestSignIn:
    async def test_the_login_page_has_a_button_per_demo_user_naming_the_role(self, web):
        page = await web.get("/dashboard/login")
        assert page.status_code == 200
        assert '<html lang="en-GB">' in page.text
        assert "<title>Sign in – Waymark</title>" in page.text
        buttons = re.findall(
            r'<button type="submit" name="user" value="([^"]+)"[^>]*>([^<]+)<', page.text
        )
        assert ("demo-casey", "Sign in as Casey Coordinator (coordinator, ICS-1)") in buttons
        assert ("demo-sam", "Sign in as Sam Triage (service_staff, PAIN-RTH)") in buttons
        assert {v for v, _ in buttons} >= {"demo-casey", "demo-jordan", "demo-lee", "demo-gita"}
        assert "waymark_login=" in page.headers["set-cookie"]

    async def test_signing_in_sets_an_httponly_strict_cookie_and_lands_on_the_inbox(self, web):
        resp = await sign_in(web)
        assert resp.status_code == 303 and resp.headers["location"] == "/dashboard/alerts"
        cookie = next(
            h for h in resp.headers.get_list("set-cookie") if h.startswith("waymark_session=")
        )
        flags = {f.strip().lower() for f in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # local mode, plain http
        page = await web.get("/dashboard/alerts")
        assert page.status_code == 200 and "<h1>Alerts</h1>" in page.text
        assert "Signed in as <strong>Casey Coordinator</strong>" in page.text

    @pytest.mark.parametrize(
        "user,home",
        [
            ("demo-casey", "/dashboard/alerts"),
            ("demo-lee", "/dashboard/overview"),
            ("demo-sam", "/dashboard/worklist"),
            ("demo-gita", "/dashboard/directory"),
        ],
    )
    async def test_each_role_starts_at_its_own_page(self, web, user, home):
        resp = await sign_in(web, user)
        assert resp.headers["location"] == home
        again = await web.get("/dashboard")
        assert again.status_code == 303 and again.headers["location"] == home

    async def test_it_returns_to_the_page_asked_for_but_never_off_the_dashboard(self, web):
        ok = await sign_in(web, next_url="/dashboard/directory?q=yoga")
        assert ok.headers["location"] == "/dashboard/directory?q=yoga"
        for bad in (
            "//evil.example/x",
            "https://evil.example/dashboard",
            "/dashboardx",
            "/alerts",
            "/dashboard\\@evil",
            "javascript:alert(1)",
        ):
            resp = await sign_in(web, next_url=bad)
            assert resp.headers["location"] == "/dashboard/alerts", bad

    async def test_a_page_without_a_session_sends_the_web_to_sign_in(self, web):
        for path in (
            "/dashboard/alerts?sort=age",
            "/dashboard/overview",
            "/dashboard/worklist",
            "/dashboard/directory",
            "/dashboard/alerts/x",
            f"/dashboard/referrals/{uuid.uuid4()}",
            "/dashboard",
        ):
            resp = await web.get(path)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/dashboard/login"), path
        resp = await web.get("/dashboard/alerts?sort=age")
        assert resp.headers["location"] == (
            "/dashboard/login?next=%2Fdashboard%2Falerts%3Fsort%3Dage"
        )

    async def test_an_expired_or_forged_cookie_is_no_session(self, web, settings):
        expired = mint_token(
            settings,
            sub="demo-casey",
            roles=["coordinator"],
            org=settings.ics,
            ics=settings.ics,
            ttl=timedelta(seconds=-5),
        )
        for value in (expired, "not-a-token", expired[:-4] + "AAAA"):
            web.cookies.set("waymark_session", value, domain="dashboard.test")
            resp = await web.get("/dashboard/alerts")
            assert resp.status_code == 303 and "/dashboard/login" in resp.headers["location"]

    async def test_the_script_gets_a_401_problem_rather_than_a_redirect(self, web):
        resp = await web.get("/dashboard/alerts", headers={"Accept": "application/json"})
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")

    async def test_login_without_the_login_pages_token_is_refused(self, web):
        resp = await web.post("/dashboard/login", data={"user": "demo-casey", "csrf": "x"})
        assert resp.status_code == 400 and "had expired" in resp.text
        assert "waymark_session" not in web.cookies
        page = await web.get("/dashboard/login")
        resp = await web.post(
            "/dashboard/login", data={"user": "demo-casey", "csrf": "not-the-token"}
        )
        assert resp.status_code == 400 and "waymark_session" not in web.cookies
        token = LOGIN_CSRF.search(resp.text)  # a refused sign-in starts a new form
        assert token and token.group(1) not in page.text
        resp = await web.post("/dashboard/login", data={"user": "nobody", "csrf": token.group(1)})
        assert resp.status_code == 422 and "Choose one of the demo users" in resp.text

    async def test_signing_out_needs_the_csrf_token_and_ends_the_session(self, web):
        await sign_in(web)
        page = await web.get("/dashboard/alerts")
        refused = await web.post("/dashboard/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403 and "has expired" in refused.text
        assert (await web.get("/dashboard/alerts")).status_code == 200
        out = await web.post("/dashboard/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
        assert "waymark_session" not in web.cookies
        login = await web.get("/dashboard/login")
        assert "You have signed out." in login.text
        assert (await web.get("/dashboard/alerts")).status_code == 303

    async def test_a_form_that_is_not_url_encoded_is_refused_as_a_page(self, web):
        resp = await web.post("/dashboard/login", json={"user": "demo-casey"})
        assert resp.status_code == 422 and resp.headers["content-type"].startswith("text/html")
        big = await web.post(
            "/dashboard/login",
            content=b"user=" + b"x" * 20000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert big.status_code == 413


class TestProductionMode:
    @pytest.fixture
    def production(self, settings: Settings) -> Any:
        before = app.state.settings
        app.state.settings = settings.model_copy(update={"deployment_mode": "production"})
        yield
        app.state.settings = before

    async def test_the_dev_sign_in_does_not_exist(self, web, production):
        page = await web.get("/dashboard/login")
        assert page.status_code == 404 and "identity provider" in page.text
        resp = await web.post("/dashboard/login", data={"user": "demo-casey", "csrf": "x"})
        assert resp.status_code == 404 and "waymark_session" not in web.cookies

    async def test_a_page_without_a_session_explains_rather_than_redirects(self, web, production):
        resp = await web.get("/dashboard/alerts")
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert "identity provider" in resp.text

    async def test_a_bearer_token_still_opens_the_pages(self, web, production, settings):
        resp = await web.get("/dashboard/alerts", headers=coordinator_auth(settings))
        assert resp.status_code == 200
