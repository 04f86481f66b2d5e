"""What the dashboard's page tests share: signing in as a demo user the way a browser does
(through the real local identity provider), the CSRF token of a page, finding an alert's row and
its status and buttons in a page, three fresh alerts of one person, and the journey the pages
that read other services show."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from shared.settings import Settings
from tests.notifications.alert_support import new_patient, put_alert

EVIL = '<script>alert("x")</script>'
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PROVIDER_FORM = re.compile(r'<form method="post" action="([^"]+)"')
LANDING = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')
CALLBACK = "/dashboard/auth/callback"


async def through_provider(url: str, user: str) -> str:
    """Follow the dashboard's sign-in at the (real, local) identity provider as a browser does,
    pressing `user`'s button on its sign-in page; the callback address it sends the browser
    back to. A client of its own: the provider's cookies (its session) stay with this sign-in."""
    async with httpx.AsyncClient(timeout=15, follow_redirects=False) as provider:
        for _ in range(10):
            res = await provider.get(url)
            if res.status_code in (302, 303):
                url = urljoin(url, res.headers["location"])
                if urlsplit(url).path == CALLBACK:
                    return url
                continue
            form = PROVIDER_FORM.search(res.text)
            assert res.status_code == 200 and form, (res.status_code, res.text[:300])
            assert f'value="{user}"' in res.text, f"{user} is not on the provider's page"
            action = urljoin(url, html.unescape(form.group(1)))
            res = await provider.post(action, data={"user": user})
            assert res.status_code in (302, 303), (res.status_code, res.text[:300])
            url = urljoin(url, res.headers["location"])
            if urlsplit(url).path == CALLBACK:
                return url
    raise AssertionError("the provider did not send the browser back to the dashboard")


async def sign_in(
    c: httpx.AsyncClient, user: str = "demo-casey", *, next_url: str = ""
) -> httpx.Response:
    """Sign in to the dashboard `c` serves (in-process or a real server) as a demo user, through
    the real local provider: /dashboard/login, the provider's page, the callback. The callback's
    answer is returned (`landing` says where it moves on to); the session cookie is in c's jar."""
    start = await c.get("/dashboard/login", params={"next": next_url} if next_url else None)
    assert start.status_code == 303, start.text[:300]
    back = urlsplit(await through_provider(start.headers["location"], user))
    # the callback of the dashboard under test (the registered redirect URI names the stack's)
    return await c.get(f"{back.path}?{back.query}")


def landing(resp: httpx.Response) -> str:
    """Where a successful sign-in's page moves the browser on to."""
    found = LANDING.search(resp.text)
    assert resp.status_code == 200 and found, (resp.status_code, resp.text[:300])
    return html.unescape(found.group(1))


async def session_cookies(s: Settings, user: str = "demo-casey") -> httpx.Cookies:
    """A demo user's signed-in cookie jar for the stack's running dashboard."""
    async with httpx.AsyncClient(base_url=s.api_url("notifications"), timeout=15) as c:
        landed = await sign_in(c, user)
        landing(landed)
        return httpx.Cookies(c.cookies)


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


class Journey:
    """A person referred to PAIN-1, not accepted, referred again to PAIN-RTH (the journey
    raises `looping.re_referral`); with a care plan and a GAD-7 screen; everything through
    the running APIs."""

    patient_id: str
    first: dict[str, Any]
    again: dict[str, Any]
    alert_id: str
    family: str
