"""The dashboard's pages over HTTP, in-process against the notifications app and the real
database (and, where a page reads another service, the instance's running APIs and Temporal):
each page for the right role with its key content; sign-in, the session cookie and sign-out;
the login redirect; 403 pages for the wrong roles; CSRF refusals; the dev sign-in only in
local mode; actions from forms and from the script; the live stream on the cookie; and data
that looks like markup shown as text.

Each test signs in with a browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from services.notifications.api import app
from shared.auth import mint_token
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import create_care_plan, eventually, referral_body, synthetic_nhs_number
from tests.notifications.alert_support import coordinator as coordinator_auth
from tests.notifications.alert_support import new_patient, put_alert, rows, sse_events

EVIL = '<script>alert("x")</script>'
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_CSRF = re.compile(
    r'<form method="post" action="/dashboard/login">\s*'
    r'<input type="hidden" name="csrf" value="([^"]+)"'
)


async def sign_in(
    c: httpx.AsyncClient, user: str = "demo-casey", *, next_url: str = ""
) -> httpx.Response:
    page = await c.get("/dashboard/login")
    assert page.status_code == 200, page.text
    token = LOGIN_CSRF.search(page.text)
    assert token
    return await c.post(
        "/dashboard/login", data={"csrf": token.group(1), "user": user, "next": next_url}
    )


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def alert_url(alert_id: str) -> str:
    return f"/dashboard/alerts/{quote(alert_id, safe='')}"


def row_of(text: str, alert_id: str) -> str:
    m = re.search(rf'<tr data-alert-id="{re.escape(html.escape(alert_id))}".*?</tr>', text, re.S)
    assert m, f"no row for {alert_id}"
    return m.group(0)


def status_cell(row: str) -> str:
    m = re.search(r'data-col="status">(.*?)</td>', row, re.S)
    assert m
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def button_names(text: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", b).strip()
        for b in re.findall(r"<button[^>]*>(.*?)</button>", text, re.S)
    ]


async def three_alerts(s: Settings, sessions: Any) -> tuple[str, dict[str, str]]:
    """A fresh person with a medium stall, an urgent safety alert and a high loop."""
    patient = new_patient()
    ids = {
        "stalled": await put_alert(
            s, sessions, patient_id=patient, kind="stalled", severity="medium"
        ),
        "safety": await put_alert(
            s, sessions, patient_id=patient, kind="safety", severity="urgent"
        ),
        "looping": await put_alert(
            s, sessions, patient_id=patient, kind="looping", severity="high"
        ),
    }
    return patient, ids


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


class TestPagesAreSafe:
    async def test_pages_carry_a_strict_content_security_policy_and_no_caching(self, web):
        await sign_in(web)
        resp = await web.get("/dashboard/alerts")
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
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


class TestAlertsWorklist:
    async def test_it_lists_the_alerts_with_counts_status_and_the_four_actions(
        self, web, settings, sessions
    ):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        assert page.status_code == 200
        order = re.findall(r'<tr data-alert-id="([^"]+)"', page.text)
        assert order == [ids["safety"], ids["looping"], ids["stalled"]]  # urgent first
        row = row_of(page.text, ids["safety"])
        assert status_cell(row) == "open"
        # an urgent alert is never snoozed: it would not reach the duty rota
        assert button_names(row) == ["Acknowledge", "Assign to me", "Resolve"]
        assert ">Reason for resolving</label>" in row and "required" in row
        loop = row_of(page.text, ids["looping"])
        assert "Snooze" in button_names(loop)
        assert 'for="snooze-' in loop and ">Snooze for</label>" in loop
        assert "3 alerts match these filters" in page.text
        assert 'aria-live="polite"' in page.text and "data-live-alerts" in page.text
        assert "Safety: PHQ-9 item 9 answered above 0" in row

    async def test_filters_narrow_the_list_and_the_counts(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(
            f"/dashboard/alerts?patient_id={patient}&kind=safety&kind=looping&sort=age"
        )
        assert set(re.findall(r'<tr data-alert-id="([^"]+)"', page.text)) == {
            ids["safety"],
            ids["looping"],
        }
        assert "2 alerts match these filters" in page.text
        assert 'value="safety" checked' in page.text
        mine = await web.get(f"/dashboard/alerts?patient_id={patient}&assignee=me")
        assert "No alerts match these filters." in mine.text

    async def test_markup_in_the_data_is_shown_as_text(self, web, settings, sessions):
        patient = new_patient()
        alert_id = await put_alert(
            settings,
            sessions,
            patient_id=patient,
            kind="looping",
            alert_id=f"{patient}:{EVIL}",
            rule=f"x.{EVIL}"[:60],
            assignee='<img src=x onerror="alert(1)">',
        )
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        assert page.status_code == 200
        assert EVIL not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;" in page.text and "&lt;img src=x" in page.text
        detail = await web.get(alert_url(alert_id))
        assert detail.status_code == 200
        assert EVIL not in detail.text and "&lt;script&gt;" in detail.text

    async def test_every_listed_alert_is_an_audited_read(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web, "demo-jordan")
        await web.get(f"/dashboard/alerts?patient_id={patient}")
        audited = await rows(
            sessions,
            "SELECT resource_id, actor, detail FROM audit_log "
            "WHERE patient_id = :p AND resource_type = 'Alert'",
            p=patient,
        )
        assert {(r.resource_id, r.actor, r.detail) for r in audited} == {
            (i, "demo-jordan", "dashboard list") for i in ids.values()
        }

    async def test_an_ics_lead_sees_figures_and_no_patient_detail(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web, "demo-lee")
        assert (await web.get("/dashboard/overview")).status_code == 200
        for path in (
            f"/dashboard/alerts?patient_id={patient}",
            f"/dashboard/alerts/{ids['safety']}",
        ):
            page = await web.get(path)
            assert page.status_code == 403 and patient not in page.text, path

    @pytest.mark.parametrize("user", ["demo-sam", "demo-gita"])
    async def test_other_roles_get_a_403_page(self, web, user):
        await sign_in(web, user)
        for path in (
            "/dashboard/alerts",
            "/dashboard/alerts/any",
            "/dashboard/overview",
            "/dashboard/alert-rows/any",
        ):
            resp = await web.get(path)
            assert resp.status_code == 403, path
            assert resp.headers["content-type"].startswith("text/html")
            assert "<h1>You cannot do this</h1>" in resp.text

    async def test_a_coordinator_of_another_ics_gets_a_403_page(self, web, settings):
        resp = await web.get(
            "/dashboard/alerts", headers=coordinator_auth(settings, ics="ICS-ELSEWHERE")
        )
        assert resp.status_code == 403 and "ICS-ELSEWHERE" in resp.text

    async def test_an_unknown_alert_is_a_404_page(self, web):
        await sign_in(web)
        resp = await web.get(alert_url("pt_nobody:stalled.not_triaged:x"))
        assert resp.status_code == 404 and "There is no alert" in resp.text


class TestActions:
    async def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
        self, web, settings, sessions
    ):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        for data in ({}, {"csrf": "forged"}):
            resp = await web.post(f"{alert_url(ids['stalled'])}/acknowledge", data=data)
            assert resp.status_code == 403 and "did not come from the dashboard" in resp.text
        [row] = await rows(
            sessions, "SELECT status FROM alert WHERE alert_id = :a", a=ids["stalled"]
        )
        assert row.status == "open"

    async def test_acknowledge_from_the_list_returns_to_it_with_a_message(
        self, web, settings, sessions
    ):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        back = f"/dashboard/alerts?patient_id={patient}&sort=severity"
        page = await web.get(back)
        row = row_of(page.text, ids["stalled"])
        version = re.search(r'name="version" value="(\d+)"', row)
        assert version
        resp = await web.post(
            f"{alert_url(ids['stalled'])}/acknowledge",
            data={"csrf": csrf_of(page), "version": version.group(1), "next": back},
        )
        assert resp.status_code == 303 and resp.headers["location"] == back
        after = await web.get(back)
        assert "Alert acknowledged." in after.text
        assert status_cell(row_of(after.text, ids["stalled"])) == "acknowledged"
        assert "Acknowledge<" not in row_of(after.text, ids["stalled"])
        assert "Alert acknowledged." not in (await web.get(back)).text  # said once
        [db] = await rows(
            sessions, "SELECT status, assignee FROM alert WHERE alert_id = :a", a=ids["stalled"]
        )
        assert (db.status, db.assignee) == ("acknowledged", "demo-casey")

    async def test_the_scripts_requests_get_json_and_problems(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        json_ = {"Accept": "application/json"}
        ok = await web.post(
            f"{alert_url(ids['looping'])}/assign",
            data={"csrf": csrf_of(page), "assignee": "me"},
            headers=json_,
        )
        assert ok.status_code == 200
        assert ok.json()["alert"]["assignee"] == "demo-casey"
        assert ok.json()["message"] == "Alert assigned."
        await web.post(
            f"{alert_url(ids['looping'])}/acknowledge", data={"csrf": csrf_of(page)}, headers=json_
        )
        again = await web.post(
            f"{alert_url(ids['looping'])}/acknowledge", data={"csrf": csrf_of(page)}, headers=json_
        )
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        assert "cannot acknowledge" in again.json()["detail"]

    async def test_snooze_and_resolve_ask_for_how_long_and_why(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        token = csrf_of(page)
        bad = await web.post(
            f"{alert_url(ids['looping'])}/snooze", data={"csrf": token, "for": "forever"}
        )
        assert bad.status_code == 422 and "how long" in bad.text
        snoozed = await web.post(
            f"{alert_url(ids['looping'])}/snooze", data={"csrf": token, "for": "3d"}
        )
        assert snoozed.status_code == 303
        [db] = await rows(
            sessions,
            "SELECT status, snoozed_until FROM alert WHERE alert_id = :a",
            a=ids["looping"],
        )
        assert db.status == "snoozed"
        assert abs(db.snoozed_until - (datetime.now(UTC) + timedelta(days=3))) < timedelta(
            minutes=5
        )
        urgent = await web.post(
            f"{alert_url(ids['safety'])}/snooze", data={"csrf": token, "for": "3d"}
        )
        assert urgent.status_code == 409 and "cannot be snoozed" in urgent.text
        why = await web.post(f"{alert_url(ids['safety'])}/resolve", data={"csrf": token})
        assert why.status_code == 422 and "reason for resolving" in why.text
        odd = await web.post(
            f"{alert_url(ids['safety'])}/resolve", data={"csrf": token, "resolution": "Not A Code!"}
        )
        assert odd.status_code == 422
        done = await web.post(
            f"{alert_url(ids['safety'])}/resolve",
            data={"csrf": token, "resolution": "contacted-person"},
        )
        assert done.status_code == 303
        assert done.headers["location"] == alert_url(ids["safety"])
        detail = await web.get(done.headers["location"])
        assert (
            '<span id="alert-status"><span class="tag tag--status-resolved">resolved' in detail.text
        )
        assert "Contacted the person" in detail.text and "Alert resolved." in detail.text

    async def test_an_action_on_a_changed_alert_is_a_412_page(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        resp = await web.post(
            f"{alert_url(ids['stalled'])}/acknowledge",
            data={"csrf": csrf_of(page), "version": "99"},
        )
        assert resp.status_code == 412 and "has changed since you read it" in resp.text

    async def test_an_admin_may_not_act_and_a_bearer_token_still_needs_the_csrf_token(
        self, web, settings, sessions
    ):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web, "demo-lee")
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        refused = await web.post(
            f"{alert_url(ids['stalled'])}/acknowledge", data={"csrf": csrf_of(page)}
        )
        assert refused.status_code == 403 and "needs one of the roles: coordinator" in refused.text
        # behind a sign-in proxy the header comes with every request, forged forms too
        headers = coordinator_auth(settings, user="proxy-coord")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxied.test"
        ) as proxied:
            forged = await proxied.post(
                f"{alert_url(ids['stalled'])}/acknowledge", data={}, headers=headers
            )
            assert forged.status_code == 403
            page = await proxied.get(f"/dashboard/alerts?patient_id={patient}", headers=headers)
            assert "Sign out" not in button_names(page.text)  # the proxy signs people out
            resp = await proxied.post(
                f"{alert_url(ids['stalled'])}/acknowledge",
                data={"csrf": csrf_of(page)},
                headers=headers,
            )
        assert resp.status_code == 303

    async def test_the_live_row_follows_the_filters(self, web, settings, sessions):
        patient, ids = await three_alerts(settings, sessions)
        await sign_in(web)
        url = f"/dashboard/alert-rows/{quote(ids['looping'], safe='')}?patient_id={patient}"
        frag = await web.get(url)
        assert frag.status_code == 200
        assert status_cell(row_of(frag.text, ids["looping"])) == "open"
        assert 'id="alert-counts"' in frag.text and "3 alerts match" in frag.text
        page = await web.get(f"/dashboard/alerts?patient_id={patient}")
        await web.post(
            f"{alert_url(ids['looping'])}/resolve",
            data={"csrf": csrf_of(page), "resolution": "duplicate"},
        )
        gone = await web.get(url)  # resolved alerts are not in the default list
        assert "data-alert-id" not in gone.text and "2 alerts match" in gone.text
        shown = await web.get(url + "&status=resolved")
        assert status_cell(row_of(shown.text, ids["looping"])) == "resolved"


class TestLiveStream:
    async def test_the_running_api_streams_to_the_session_cookie(self, running_apps):
        # a real server (the instance's notifications-api process): the stream never ends
        async with httpx.AsyncClient(
            base_url=running_apps.api_url("notifications"), timeout=30
        ) as http:
            signed_in = await sign_in(http)
            assert signed_in.status_code == 303
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


# --- pages that read the other services (the instance's running APIs and Temporal) ---------


def _api(s: Settings, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=s.api_url(service), timeout=30)


class Journey:
    """A person referred to PAIN-1, not accepted, referred again to PAIN-RTH (the journey
    raises `looping.re_referral`); with a care plan and a GAD-7 screen; everything through
    the running APIs."""

    patient_id: str
    first: dict[str, Any]
    again: dict[str, Any]
    alert_id: str
    family: str


@pytest.fixture(scope="module")
async def journey(running_apps: Settings, sessions: Any) -> Journey:
    s = running_apps
    j = Journey()
    j.family = f"Synthetic-{uuid.uuid4().hex[:6]}"
    patient = {
        "nhs_number": synthetic_nhs_number(),
        "given_name": "Robin",
        "family_name": j.family,
        "birth_date": "1970-05-06",
    }
    gp = auth(s, role="clinician", org="GP-A81001")
    async with _api(s, "referrals") as http:
        first = await http.post(
            "/referrals",
            json=referral_body(patient=patient, clinical_summary=f"Summary with {EVIL} in it"),
            headers=gp,
        )
        assert first.status_code == 201, first.text
        j.first = first.json()
        rejected = await http.post(
            f"/referrals/{j.first['id']}/reject",
            json={"reason_code": "does-not-meet-criteria"},
            headers={**auth(s, role="service_staff", org="PAIN-1"), "If-Match": 'W/"1"'},
        )
        assert rejected.status_code == 200, rejected.text
        again = await http.post(
            "/referrals",
            json=referral_body(
                patient=patient, to_org="PAIN-RTH", to_service_id="svc-pain-mgmt-programme"
            ),
            headers=gp,
        )
        assert again.status_code == 201, again.text
        j.again = again.json()
    j.patient_id = j.first["patient_id"]
    async with _api(s, "care_plans") as http:
        plan = await create_care_plan(
            http,
            gp,
            {
                "nhs_number": patient["nhs_number"],
                "consented_organisations": ["PAIN-RTH"],
                "content": {
                    "what_matters_to_me": "Gardening again",
                    "goals": [{"what": "Walk"}],
                    "communication": {"easy_read": True},
                },
            },
        )
        assert plan.status_code == 201, plan.text
        screen = await http.post(
            f"/care-plans/{plan.json()['id']}/assessments",
            json={"instrument": "GAD-7", "answers": {str(i): 2 for i in range(1, 8)}},
            headers=gp,
        )
        assert screen.status_code == 201, screen.text

    async def alert() -> Any:
        found = await rows(
            sessions,
            "SELECT alert_id FROM alert WHERE patient_id = :p AND rule = :r",
            p=j.patient_id,
            r="looping.re_referral",
        )
        return found[0].alert_id if found else None

    j.alert_id = await eventually(alert, timeout=120, interval=0.5)
    return j


class TestAlertDetail:
    async def test_it_explains_draws_the_journey_and_shows_the_referrals_and_plan(
        self, web, journey
    ):
        await sign_in(web)
        page = await web.get(alert_url(journey.alert_id))
        assert page.status_code == 200, page.text
        text = page.text
        assert "<h1>Looping: referred again after an ending</h1>" in text
        explanation = re.search(r'<p id="explanation"[^>]*>(.*?)</p>', text, re.S)
        assert explanation and explanation.group(1).startswith("Referred again to")
        assert '<span id="alert-status"><span class="tag tag--status-open">open' in text
        figure = re.search(r'<figure id="timeline".*?</figure>', text, re.S)
        assert figure
        assert re.search(
            r'<svg[^>]*role="img"[^>]*aria-labelledby="journey-title '
            r'journey-desc"',
            figure.group(0),
        )
        assert ">Not accepted</text>" in figure.group(0)
        assert ">re-referred</text>" in figure.group(0)
        assert 'id="journey-table"' in text and "ended without treatment (a bounce)" in text
        assert f"Robin {journey.family}" in text
        for rid in (journey.first["id"], journey.again["id"]):
            assert f"/dashboard/referrals/{rid}?alert=" in text
        assert "Gardening again" in text and "easy read" in text
        assert re.search(r"<th scope=\"row\">GAD-7</th><td>moderate</td>", text)
        assert button_names(text).count("Acknowledge") == 1

    async def test_an_ics_lead_sees_no_alert_and_no_patient_detail(self, web, journey):
        await sign_in(web, "demo-lee")
        page = await web.get(alert_url(journey.alert_id))
        assert page.status_code == 403
        assert "Gardening again" not in page.text and journey.family not in page.text
        assert "Acknowledge" not in button_names(page.text)

    async def test_signposting_from_the_directory_preselects_the_reason(self, web, journey):
        await sign_in(web)
        page = await web.get(alert_url(journey.alert_id) + "?signpost=svc-unknown-x")
        assert page.status_code == 200
        assert "You chose to signpost the person to" in page.text
        assert '<option value="signposted" selected>' in page.text

    async def test_acknowledging_on_the_page_shows_the_new_status(self, web, journey, running_apps):
        await sign_in(web, "demo-jordan")
        page = await web.get(alert_url(journey.alert_id))
        version = re.search(r'name="version" value="(\d+)"', page.text)
        assert version
        resp = await web.post(
            f"{alert_url(journey.alert_id)}/acknowledge",
            data={
                "csrf": csrf_of(page),
                "version": version.group(1),
                "next": alert_url(journey.alert_id),
            },
        )
        assert resp.status_code == 303
        after = await web.get(resp.headers["location"])
        assert (
            '<span id="alert-status"><span class="tag tag--status-acknowledged">'
            "acknowledged" in after.text
        )
        assert "demo-jordan" in after.text


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


@pytest.fixture(scope="module")
async def directory(running_apps: Settings) -> str:
    """The demo directory, created through the directory API; a postcode of its area."""
    from services.directory.data.generate_postcodes import read as read_postcodes
    from services.directory.demo import seed_directory

    await asyncio.to_thread(seed_directory, running_apps)
    return str(read_postcodes()[0][0])


class TestDirectoryPage:
    async def test_a_search_near_a_postcode_lists_distances_and_signposting_links(
        self, web, directory, journey
    ):
        await sign_in(web)
        alert = quote(journey.alert_id, safe="")
        page = await web.get(
            f"/dashboard/directory?postcode={quote(directory)}&radius_km=50&alert={alert}"
        )
        assert page.status_code == 200, page.text
        assert re.search(r"\d+ services? found within 50 km of", page.text)
        assert re.search(r"[\d.]+ km away", page.text)
        assert f'href="/dashboard/alerts/{alert}?signpost=' in page.text
        assert "Signpost to " in page.text

    async def test_an_unknown_postcode_is_explained_on_the_page(self, web, directory):
        await sign_in(web)
        page = await web.get("/dashboard/directory?postcode=ZZ99%209ZZ")
        assert page.status_code == 422 and "There is a problem" in page.text
        assert "<h1>Find a service</h1>" in page.text

    async def test_the_empty_form_and_every_role(self, web, directory):
        for user in ("demo-casey", "demo-sam", "demo-gita"):
            await sign_in(web, user)
            page = await web.get("/dashboard/directory")
            assert page.status_code == 200 and "Search by words" in page.text
            assert '<label for="category">Kind of service</label>' in page.text


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
