"""The coordinator's dashboard in a real browser (headless Debian Chromium through Playwright),
against the processes `waymark up` starts: the notifications API serves /dashboard.

- End to end: a referral made through the referrals API stalls for real (its test-only category
  must be triaged within a minute: tests/dashboard/fast_triage_rules.toml); the journey raises
  the alert once its events have settled (60 s); the alert appears in an alerts worklist that
  was already open, without a reload; the coordinator opens it and acknowledges it; the
  PatientJourney workflow's own query then shows it acknowledged.
- Accessibility: axe-core (WCAG 2.x A/AA, 2.2 AA) on every page: no serious or critical
  violation. A summary prints at the end of the run and is written to axe.json beside the
  screenshots (.waymark/screenshots/<instance>/).
- Keyboard: Acknowledge on the worklist is reached with Tab alone and pressed with Enter.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from playwright.async_api import Browser, Page, expect

from shared.temporal_client import connect as connect_temporal
from tests.dashboard.browser_support import (
    VIEWPORT,
    WAYFORD_POSTCODE,
    Dashboard,
    LoopAlert,
    SignedIn,
    api,
    blocking,
    check_accessibility,
    coordinator_headers,
    make_loop_alert,
    new_context,
    new_patient,
    publish_alerts_screenshot,
    publish_directory_service,
    refer,
    screenshot,
)
from tests.helpers import eventually
from workflows.journeys import workflow_id
from workflows.journeys.workflows import PatientJourney

#: what the settled journey and the worker may take beyond the 60 s settle (a bound, not a
#: timing assertion: it only stops a broken run from hanging)
STALL_TIMEOUT_MS = 180_000
#: a bound on Tab presses while looking for a button (the page's every control, a few times)
MAX_TABS = 600
LIVE_REGIONS = '[aria-live], [role="status"], [role="alert"], [role="log"]'


async def live_texts(page: Page) -> list[str]:
    return [t.strip() for t in await page.locator(LIVE_REGIONS).all_inner_texts()]


def alert_path(alert_id: str) -> str:
    return f"/alerts/{quote(alert_id, safe='')}"


async def journey_alert(s: Any, patient_id: str, alert_id: str) -> Any:
    client = await connect_temporal(s)
    view = await client.get_workflow_handle(workflow_id(patient_id)).query(PatientJourney.journey)
    return next((a for a in view.alerts if a.alert_id == alert_id), None)


# --- end to end --------------------------------------------------------------------------------


class TestAStallEndToEnd:
    async def test_a_stalled_referral_appears_live_and_its_acknowledgement_reaches_the_journey(
        self, page: Page, dashboard: Dashboard, coordinator: SignedIn, fast_triage_service: str
    ):
        s = dashboard.settings
        # the worklist is open, and listening, before the referral exists
        navigations: list[str] = []
        async with page.expect_response(
            lambda r: "text/event-stream" in r.headers.get("content-type", ""), timeout=30_000
        ) as stream:
            await page.goto(dashboard.url("/alerts"))
        assert (await stream.value).ok
        page.on(
            "framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
        )
        await page.evaluate("window.__waymarkSamePage = true")
        before = await live_texts(page)

        referral = await refer(
            s, patient=new_patient(), to_org="TEST-FAST1", to_service_id=fast_triage_service
        )
        prefix = f"{referral['patient_id']}:stalled.not_triaged:{referral['id']}:"
        row = page.locator(f'tr[data-alert-id^="{prefix}"]')
        await expect(row).to_have_count(1, timeout=STALL_TIMEOUT_MS)

        # it came over the open page's stream: no navigation, the same document
        assert navigations == [], navigations
        assert await page.evaluate("window.__waymarkSamePage === true")
        await expect(row.locator('[data-col="status"]')).to_contain_text("open", ignore_case=True)
        # and was announced to screen reader users, in words the row shows too
        title = (await row.get_by_role("link").first.inner_text()).strip()
        assert title

        async def announced() -> list[str]:
            return [t for t in await live_texts(page) if title in t and t not in before]

        await eventually(announced, timeout=10)
        shot = await screenshot(page, dashboard, "alerts-live")
        # for the README: the page down to the end of the table, the new alert in it
        bottom = await row.evaluate(
            "el => el.closest('table').getBoundingClientRect().bottom + window.scrollY"
        )
        docs = dashboard.shots / "alerts-live-readme.png"
        await page.screenshot(
            path=str(docs),
            full_page=True,
            clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 24},
        )
        publish_alerts_screenshot(docs)
        alert_id = await row.get_attribute("data-alert-id")
        assert alert_id and shot.exists()

        # the coordinator opens it: the explanation and the journey's timeline
        await row.get_by_role("link").first.click()
        await page.wait_for_url(re.compile(r"/dashboard/alerts/[^/?#]+"))
        await expect(page.locator("#explanation")).to_contain_text("not triaged")
        await expect(page.locator("#explanation")).to_contain_text("test fast triage")
        await expect(page.locator("figure#timeline svg")).to_be_visible()
        await expect(page.locator("#alert-status")).to_contain_text("open", ignore_case=True)
        await screenshot(page, dashboard, "alert-detail-stalled")

        # ...and acknowledges it
        await page.get_by_role("button", name="Acknowledge", exact=True).click()
        await expect(page.locator("#alert-status")).to_contain_text(
            "acknowledged", ignore_case=True
        )
        await screenshot(page, dashboard, "alert-detail-acknowledged")

        # the patient's journey heard it: its own query shows the alert acknowledged by them
        async def acknowledged() -> Any:
            a = await journey_alert(s, referral["patient_id"], alert_id)
            return a if a is not None and a.status == "acknowledged" else None

        alert = await eventually(acknowledged, timeout=60, interval=0.5)
        assert alert.rule == "stalled.not_triaged"
        assert alert.referral_id == referral["id"]
        assert alert.assignee == f"{coordinator.user}"


# --- accessibility -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    loop: LoopAlert  # an alert and its referrals
    service: dict[str, Any]  # a published directory service


@pytest.fixture(scope="module")
async def sample(running_apps: Any) -> Sample:
    """What the pages show, all made through the running APIs."""
    return Sample(
        loop=await make_loop_alert(running_apps),
        service=await publish_directory_service(running_apps),
    )


#: page name -> (who looks at it, its path)
PAGES: dict[str, tuple[str, Callable[[Sample], str]]] = {
    "signed-out": ("nobody", lambda x: "/signed-out"),
    "sign-in-problem": ("nobody", lambda x: "/auth/callback?error=access_denied"),
    "alerts": ("coordinator", lambda x: "/alerts"),
    "alert-detail": ("coordinator", lambda x: alert_path(x.loop.alert_id)),
    "referral-detail": ("coordinator", lambda x: f"/referrals/{x.loop.referral_id}"),
    "worklist": ("service_staff", lambda x: "/worklist"),
    "directory": (
        "coordinator",
        lambda x: (
            "/directory?"
            + urlencode(
                {"q": x.service["name"].split()[0], "postcode": WAYFORD_POSTCODE, "radius_km": "10"}
            )
        ),
    ),
    "overview": ("coordinator", lambda x: "/overview"),
    "partner-clients": ("admin", lambda x: "/partner-clients"),
}


class TestAccessibility:
    @pytest.mark.parametrize("name", list(PAGES))
    async def test_the_page_has_no_serious_or_critical_violation(
        self,
        name: str,
        browser: Browser,
        dashboard: Dashboard,
        coordinator: SignedIn,
        service_staff: SignedIn,
        admin: SignedIn,
        sample: Sample,
    ):
        who, path = PAGES[name]
        if who == "nobody":
            ctx = await new_context(browser)
        else:
            ctx = {"coordinator": coordinator, "service_staff": service_staff, "admin": admin}[
                who
            ].context
        page = await ctx.new_page()
        try:
            resp = await page.goto(dashboard.url(path(sample)))
            status = 400 if name == "sign-in-problem" else 200
            assert resp is not None and resp.status == status, (name, resp and resp.status)
            assert page.url.startswith(dashboard.url("/")), page.url  # not sent to sign in
            assert (await page.title()).strip(), "every page has a title"
            await expect(page.locator("h1")).to_have_count(1)
            await show_the_data(name, page, sample)
            await screenshot(page, dashboard, name)
            result = await check_accessibility(page, dashboard, name)
        finally:
            await page.close()
            if who == "nobody":
                await ctx.close()
        assert blocking(result) == [], "\n".join(blocking(result))


async def show_the_data(name: str, page: Page, sample: Sample) -> None:
    """Wait for what the page is about, so axe and the screenshot see it filled in (lists: a
    first row; the sample's own may be on a later page when other tests filled the inbox)."""
    loop = sample.loop
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "alerts": lambda: expect(page.locator("tr[data-alert-id]").first).to_be_visible(),
        "alert-detail": lambda: expect(page.locator("#explanation")).to_contain_text(
            "Referred again"
        ),
        "referral-detail": lambda: expect(page.locator("main")).to_contain_text(loop.referral_id),
        "worklist": lambda: expect(page.locator("main table tbody tr").first).to_be_visible(),
        "directory": lambda: expect(page.locator("main")).to_contain_text(sample.service["name"]),
        "partner-clients": lambda: expect(
            page.locator("main table tbody tr").first
        ).to_be_visible(),
    }
    if name in checks:
        await checks[name]()


# --- keyboard ----------------------------------------------------------------------------------


class TestKeyboard:
    async def test_acknowledge_is_reached_with_tab_and_pressed_with_enter(
        self, page: Page, dashboard: Dashboard
    ):
        s = dashboard.settings
        loop = await make_loop_alert(s)
        # the person's alerts (as a coordinator finds them by the person's id), so the number of
        # Tab presses does not depend on how many alerts other tests left in the inbox
        await page.goto(dashboard.url(f"/alerts?patient_id={loop.patient_id}"))
        row = page.locator(f'tr[data-alert-id="{loop.alert_id}"]')
        await expect(row).to_have_count(1)
        button = row.get_by_role("button", name="Acknowledge", exact=True)
        await expect(button).to_have_count(1)

        # from the top of the page, Tab alone (no mouse, no focus() from the test)
        presses = 0
        while not await button.evaluate("el => el === document.activeElement"):
            if presses == MAX_TABS:
                pytest.fail(f"Acknowledge not reached in {MAX_TABS} presses of Tab")
            await page.keyboard.press("Tab")
            presses += 1
        # where the focus is can be seen: an outline or a ring drawn with box-shadow
        assert await button.evaluate("el => el.matches(':focus-visible')")
        style, width, shadow = await button.evaluate(
            "el => { const c = getComputedStyle(el); return [c.outlineStyle, c.outlineWidth,"
            " c.boxShadow]; }"
        )
        outline = style != "none" and width != "0px"
        assert outline or shadow != "none", (style, width, shadow)
        await screenshot(page, dashboard, "alerts-keyboard-focus", full_page=False)

        await page.keyboard.press("Enter")
        await expect(
            page.locator(f'tr[data-alert-id="{loop.alert_id}"] [data-col="status"]')
        ).to_contain_text("acknowledged", ignore_case=True)

        async with api(s, "notifications") as http:
            resp = await http.get(
                f"/alerts/{quote(loop.alert_id, safe='')}", headers=coordinator_headers(s)
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "acknowledged"
        print(f"Acknowledge reached after {presses} presses of Tab")
