"""What the dashboard's browser tests share: one headless Chromium per test session (Debian's
own, driven by Playwright: no browser is ever downloaded), contexts signed in through the
local identity provider's sign-in page and reused, axe-core checks, screenshots, and referrals
made through the running referrals API.

Installed by scripts/browser_deps.sh (sourced by scripts/test.sh): `apt-get install chromium`
and `npm ci` in tests/dashboard (axe-core, pinned in package-lock.json). Playwright itself is
a dev dependency in pyproject.toml.

Screenshots of every page and the accessibility report (axe.json) are written to
.waymark/screenshots/<instance>/; with WAYMARK_UPDATE_SCREENSHOTS=1 the live alerts worklist
is also copied to docs/dashboard-alerts.png (the README shows it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import eventually, referral_body, synthetic_nhs_number

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_JS = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"
#: WCAG 2.0, 2.1 and 2.2, levels A and AA (axe has no rule tagged wcag22a)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING_IMPACTS = ("serious", "critical")
IMPACTS = ("critical", "serious", "moderate", "minor")
VIEWPORT = {"width": 1280, "height": 900}
UPDATE_ENV = "WAYMARK_UPDATE_SCREENSHOTS"
DOCS_ALERTS_PNG = REPO / "docs" / "dashboard-alerts.png"

#: the demo users' organisations (the local provider's sign-in page lists them; scripts/seed
#: uses the same)
CLINICIAN_ORG = "GP-A81001"
SERVICE_STAFF_ORG = "PAIN-RTH"

#: page name -> axe's findings, for the summary printed at the end and written to axe.json
AXE_RESULTS: dict[str, dict[str, Any]] = {}


def screenshot_dir(s: Settings) -> Path:
    return s.home / "screenshots" / s.instance


@dataclass(frozen=True)
class Dashboard:
    settings: Settings
    base: str  # http://127.0.0.1:<notifications port>

    def url(self, path: str = "") -> str:
        return f"{self.base}/dashboard{path}"

    @property
    def shots(self) -> Path:
        return screenshot_dir(self.settings)


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/test.sh (it installs Debian's "
            "chromium) or `apt-get install -y chromium`"
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(scope="session")
def dashboard(running_apps: Settings) -> Dashboard:
    s = running_apps
    screenshot_dir(s).mkdir(parents=True, exist_ok=True)
    return Dashboard(settings=s, base=f"http://127.0.0.1:{s.api_port('notifications')}")


async def new_context(browser: Browser) -> BrowserContext:
    ctx = await browser.new_context(
        viewport=VIEWPORT,
        locale="en-GB",  # type: ignore[arg-type]
        timezone_id="Europe/London",
    )
    ctx.set_default_timeout(15_000)
    return ctx


@dataclass(frozen=True)
class SignedIn:
    context: BrowserContext
    user: str  # the demo user's id, the value of the login button pressed


async def choose_demo_user(page: Page, role: str) -> str:
    """On the local identity provider's sign-in page, press the button of the first demo user
    with `role` (the page names each user's role and organisation beside the button); their
    id."""
    item = page.locator("li", has_text=re.compile(rf"\b{re.escape(role)}, ")).first
    button = item.get_by_role("button")
    user = await button.get_attribute("value")
    assert user, f"the provider's page has no demo user with the role {role}"
    await button.click()
    return user


def on_dashboard_page(dashboard: Dashboard) -> Callable[[str], bool]:
    """A dashboard page proper (not the sign-in's callback)."""
    return lambda url: url.startswith(dashboard.url("/")) and "/dashboard/auth/" not in url


async def sign_in(browser: Browser, dashboard: Dashboard, role: str) -> SignedIn:
    """A context signed in the way a person signs in: the dashboard sends the browser to the
    local identity provider, the demo user with `role` is chosen there, and the provider sends
    it back to the dashboard."""
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await page.goto(dashboard.url("/login"))
    assert page.url.startswith(dashboard.settings.issuer), page.url
    user = await choose_demo_user(page, role)
    await page.wait_for_url(on_dashboard_page(dashboard))
    await page.close()
    return SignedIn(context=ctx, user=user)


@pytest.fixture(scope="session")
async def coordinator(browser: Browser, dashboard: Dashboard) -> AsyncIterator[SignedIn]:
    signed_in = await sign_in(browser, dashboard, "coordinator")
    yield signed_in
    await signed_in.context.close()


@pytest.fixture(scope="session")
async def service_staff(browser: Browser, dashboard: Dashboard) -> AsyncIterator[SignedIn]:
    signed_in = await sign_in(browser, dashboard, "service_staff")
    yield signed_in
    await signed_in.context.close()


@pytest.fixture(scope="session")
async def admin(browser: Browser, dashboard: Dashboard) -> AsyncIterator[SignedIn]:
    """An organisation's administrator as behind a sign-in proxy (a bearer header on every
    request): the local sign-in page's demo users hold no administrator."""
    ctx = await new_context(browser)
    org = f"ORG-{uuid.uuid4().hex[:8].upper()}"
    headers = auth(dashboard.settings, role="admin", org=org)
    await ctx.set_extra_http_headers(headers)
    # one client of its organisation, so the partner clients page has a row with its forms
    async with httpx.AsyncClient(base_url=dashboard.base, timeout=30) as api:
        r = await api.post(
            "/partner-clients",
            headers=headers,
            json={"name": "Booking system", "scopes": ["referral.read"], "client_id": org.lower()},
        )
        assert r.status_code == 201, r.text
    yield SignedIn(context=ctx, user="admin")
    await ctx.close()


@pytest.fixture
async def page(coordinator: SignedIn) -> AsyncIterator[Page]:
    """A fresh tab in the coordinator's signed-in context."""
    p = await coordinator.context.new_page()
    yield p
    await p.close()


# --- screenshots and accessibility -------------------------------------------------------------


async def screenshot(
    page: Page, dashboard: Dashboard, name: str, *, full_page: bool = True
) -> Path:
    path = dashboard.shots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


def publish_alerts_screenshot(path: Path) -> bool:
    """Copy the alerts worklist's screenshot to docs/ when asked to (the README shows it)."""
    if os.environ.get(UPDATE_ENV) != "1":
        return False
    DOCS_ALERTS_PNG.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_ALERTS_PNG)
    return True


async def check_accessibility(page: Page, dashboard: Dashboard, name: str) -> dict[str, Any]:
    """Run axe-core (WCAG 2.x A/AA and 2.2 AA rules) on the page as it is now; record the
    findings for the summary and axe.json; return them."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run scripts/test.sh (it runs npm ci in tests/dashboard)")
    # evaluated through the DevTools protocol, not added as a <script>: the dashboard's Content
    # Security Policy (script-src 'self') rightly refuses inline scripts, and stays enforced
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(_axe_source())
    raw = await page.evaluate(
        """tags => axe.run(document, {runOnly: {type: 'tag', values: tags},
                                      resultTypes: ['violations']})""",
        AXE_TAGS,
    )
    violations = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "tags": [t for t in v["tags"] if t.startswith("wcag")],
            "nodes": [
                {"target": n["target"], "summary": n.get("failureSummary", "")} for n in v["nodes"]
            ],
        }
        for v in raw["violations"]
    ]
    by_impact = {i: sum(len(v["nodes"]) for v in violations if v["impact"] == i) for i in IMPACTS}
    result = {
        "url": page.url,
        "axe_version": raw["testEngine"]["version"],
        "tags": AXE_TAGS,
        "passes_checked": len(raw.get("passes", [])),
        "by_impact": by_impact,
        "violations": violations,
    }
    AXE_RESULTS[name] = result
    (dashboard.shots / "axe.json").write_text(json.dumps(AXE_RESULTS, indent=2) + "\n")
    return result


@functools.cache
def _axe_source() -> str:
    return AXE_JS.read_text()


def blocking(result: dict[str, Any]) -> list[str]:
    """The serious and critical violations, one line each with where they are."""
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        f"{', '.join(str(n['target']) for n in v['nodes'][:5])}"
        for v in result["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def axe_summary_lines() -> list[str]:
    lines = []
    for name, r in AXE_RESULTS.items():
        counts = ", ".join(f"{i} {r['by_impact'][i]}" for i in IMPACTS)
        rules = ", ".join(sorted({f"{v['id']} ({v['impact']})" for v in r["violations"]}))
        lines.append(f"{name:16} {counts}" + (f"  [{rules}]" if rules else ""))
    return lines


# --- data made through the running APIs --------------------------------------------------------


def api(s: Settings, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.api_port(service)}", timeout=15)


def coordinator_headers(s: Settings) -> dict[str, str]:
    return auth(s, role="coordinator", org="ICB-BROWSER", ics=s.ics)


def new_patient() -> dict[str, str]:
    return {
        "nhs_number": synthetic_nhs_number(),
        "given_name": "Alex",
        "family_name": f"Synthetic-{uuid.uuid4().hex[:6]}",
        "birth_date": "1975-06-07",
    }


async def refer(s: Settings, **overrides: Any) -> dict[str, Any]:
    """A referral from the demo clinician's practice, made through the referrals API."""
    async with api(s, "referrals") as http:
        resp = await http.post(
            "/referrals",
            json=referral_body(**overrides),
            headers=auth(s, role="clinician", org=CLINICIAN_ORG),
        )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def inbox_alert(
    s: Settings, patient_id: str, rule: str, *, timeout: float = 60
) -> dict[str, Any]:
    """Wait for the patient's alert of `rule` in the notifications inbox (the API's view)."""

    async def found() -> dict[str, Any] | None:
        async with api(s, "notifications") as http:
            resp = await http.get(
                "/alerts",
                params={
                    "patient_id": patient_id,
                    "status": ["open", "acknowledged", "escalated", "snoozed", "resolved"],
                },
                headers=coordinator_headers(s),
            )
        assert resp.status_code == 200, resp.text
        return next((a for a in resp.json()["items"] if a["rule"] == rule), None)

    return dict(await eventually(found, timeout=timeout, interval=0.5))


@dataclass(frozen=True)
class LoopAlert:
    patient_id: str
    first_referral_id: str  # rejected by PAIN-1
    referral_id: str  # the re-referral to PAIN-RTH, waiting for triage
    alert_id: str


async def make_loop_alert(s: Settings) -> LoopAlert:
    """A re-referral loop, every step through the referrals API: referred to PAIN-1's pain
    management programme, not accepted, then referred again to PAIN-RTH's (same category). The
    journey raises `looping.re_referral` at once (loop rules do not wait for settling)."""
    patient = new_patient()
    first = await refer(s, patient=patient)
    async with api(s, "referrals") as http:
        rejected = await http.post(
            f"/referrals/{first['id']}/reject",
            json={"reason_code": "does-not-meet-criteria"},
            headers={**auth(s, role="service_staff", org="PAIN-1"), "If-Match": 'W/"1"'},
        )
    assert rejected.status_code == 200, rejected.text
    again = await refer(
        s, patient=patient, to_org=SERVICE_STAFF_ORG, to_service_id="svc-pain-mgmt-programme"
    )
    alert = await inbox_alert(s, first["patient_id"], "looping.re_referral")
    return LoopAlert(
        patient_id=first["patient_id"],
        first_referral_id=first["id"],
        referral_id=again["id"],
        alert_id=alert["alert_id"],
    )


#: a service of the test-only category that tests/dashboard/fast_triage_rules.toml gives one
#: minute to triage (the test stack's journeys worker reads that file after rules.toml)
FAST_TRIAGE_CATEGORY = "test_fast_triage"
FAST_TRIAGE_SERVICE = ("svc-test-fast-triage", "TEST-FAST1", FAST_TRIAGE_CATEGORY, "active")


@pytest.fixture(scope="session")
async def fast_triage_service(running_apps: Settings, referrals_sessions: Any) -> str:
    """The fast-triage service in the referrals service's directory replica (as the known
    services are: through the directory consumer's handler), after checking that the stack's
    journeys worker was given the test rules."""
    from tests.conftest import publish_directory_state
    from workflows.journeys.activities import RULES_ENV, rules_from_environment

    minutes = rules_from_environment().triage_minutes_by_category.get(FAST_TRIAGE_CATEGORY)
    assert minutes == 1, (
        f"the test stack's journey rules ({RULES_ENV}={os.environ.get(RULES_ENV)!r}) must "
        f"include tests/dashboard/fast_triage_rules.toml, as tests/conftest.py sets it"
    )
    await publish_directory_state(running_apps, referrals_sessions, [FAST_TRIAGE_SERVICE])
    return FAST_TRIAGE_SERVICE[0]


#: a postcode of the synthetic area's table (tests/directory uses it too)
WAYFORD_POSTCODE = "WY1 0BG"


async def publish_directory_service(s: Settings) -> dict[str, Any]:
    """A provider and a published service of its own, through the running directory API, so
    a directory search has a result to show (named uniquely: searches find only it)."""
    code, word = f"PRV-{uuid.uuid4().hex[:8].upper()}", f"Wayfinder{uuid.uuid4().hex[:6]}"
    headers = auth(s, role="service_staff", org=code, sub=f"staff-{code.lower()}")
    async with api(s, "directory") as http:
        org = await http.put(
            f"/organizations/{code}",
            headers=headers,
            json={
                "name": f"{word} Community Trust",
                "description": "A synthetic provider for the browser tests.",
            },
        )
        assert org.status_code == 201, org.text
        created = await http.post(
            "/services",
            headers=headers,
            json={
                "id": f"svc-{word.lower()}",
                "name": f"{word} physiotherapy",
                "description": "Assessment and exercise for joint and back pain.",
                "category": "msk_physiotherapy",
                "conditions": ["persistent_pain"],
                "delivery_modes": ["in_person"],
                "how_to_refer": "GP referral through Waymark.",
                "locations": [
                    {
                        "name": "Wayford Health Centre",
                        "postcode": WAYFORD_POSTCODE,
                        "address_1": "1 Market Street",
                        "city": "Wayford",
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        published = await http.post(f"/services/{created.json()['id']}/publish", headers=headers)
        assert published.status_code == 200, published.text
    return dict(published.json())
