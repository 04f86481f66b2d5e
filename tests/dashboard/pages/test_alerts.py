"""The alert inbox's pages (pages/alerts.py): the list with counts, filters and actions, markup
in the data shown as text, every listed alert an audited read, 403 pages for roles that may
not see alerts; the actions from forms and from the script, with CSRF; the live row; and one
alert's page (its explanation, the journey drawn, the referrals and plan) over the running
stack.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest

from services.notifications.api import app
from tests.dashboard.page_support import (
    EVIL,
    alert_url,
    button_names,
    csrf_of,
    row_of,
    sign_in,
    status_cell,
    three_alerts,
)
from tests.notifications.alert_support import coordinator as coordinator_auth
from tests.notifications.alert_support import new_patient, put_alert, rows


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
