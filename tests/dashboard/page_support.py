"""What the dashboard's page tests share: signing in as a demo user the way a browser does
(the login page's token, then the form), the CSRF token of a page, finding an alert's row and
its status and buttons in a page, three fresh alerts of one person, and the journey the pages
that read other services show."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

import httpx

from shared.settings import Settings
from tests.notifications.alert_support import new_patient, put_alert

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


class Journey:
    """A person referred to PAIN-1, not accepted, referred again to PAIN-RTH (the journey
    raises `looping.re_referral`); with a care plan and a GAD-7 screen; everything through
    the running APIs."""

    patient_id: str
    first: dict[str, Any]
    again: dict[str, Any]
    alert_id: str
    family: str
