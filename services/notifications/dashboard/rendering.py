"""What every page of the dashboard shares: the Jinja2 templates (autoescape on) with the
dashboard's filters and words, the navigation, `render` with the pages' security headers, and
the small helpers every page module uses (who asks, JSON or a page, a redirect after a form).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader

from services.notifications.alerts.domain import SEVERITY_RANK, Kind, Severity, Status
from services.notifications.dashboard import charts, labels, session
from services.notifications.dashboard.labels import (
    FLASH_MESSAGES,
    KIND_NAMES,
    RESOLUTIONS,
    RULE_NAMES,
    SNOOZE_CHOICES,
    STATUS_HINTS,
)
from services.notifications.dashboard.session import LoginRequired, Viewer
from shared.access import Capability, may_use
from shared.auth import Role
from shared.settings import Settings

HERE = FilePath(__file__).parent
PAGE_SIZE = 50

#: {issuer} is the identity provider's origin: signing out is a form whose answer redirects
#: there (RP-initiated logout), and form-action governs a form's redirects too
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self' {issuer}; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# --- templates ----------------------------------------------------------------------------------


def _when(value: Any) -> str:
    when = labels.parse_time(value)
    return labels.when_text(when) if when else "–"


def _day(value: Any) -> str:
    when = labels.parse_time(value)
    return labels.day_text(when) if when else "–"


def _ago(value: Any, now: datetime) -> str:
    when = labels.parse_time(value)
    if when is None:
        return "–"
    delta = now - when
    if delta.total_seconds() < 60:
        return "just now"
    return f"{labels.duration_text(delta)} ago"


def _nhs(value: Any) -> str:
    digits = str(value or "").replace(" ", "")
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}" if len(digits) == 10 else str(value or "")


def dom_id(value: Any) -> str:
    """A stable, CSS-safe id for a string such as an alert id (which holds ':' and '.')."""
    return "a" + hashlib.sha256(str(value).encode()).hexdigest()[:12]


def alert_title(a: Any) -> str:
    kind = KIND_NAMES.get(str(a.kind), str(a.kind).capitalize())
    rule = RULE_NAMES.get(a.rule, a.rule.split(".")[-1].replace("_", " "))
    return f"{kind}: {rule}"


def _env() -> Environment:
    # autoescape on for every template; a value another service's API left out renders as
    # nothing rather than failing the page
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        day=_day,
        ago=_ago,
        nhs=_nhs,
        dom_id=dom_id,
        alert_title=alert_title,
        urlpart=lambda v: quote(str(v), safe=""),
        category=lambda v: labels.category_label(v if isinstance(v, str) else ""),
        state=lambda v: labels.state_label(v if isinstance(v, str) else ""),
        duration=labels.duration_text,
        severity_rank=lambda s: SEVERITY_RANK.get(Severity(str(s)), 9),
        fmt=charts.fmt,
    )
    env.globals.update(
        KIND_NAMES=KIND_NAMES,
        RULE_NAMES=RULE_NAMES,
        SNOOZE_CHOICES=SNOOZE_CHOICES,
        RESOLUTIONS=RESOLUTIONS,
        STATUS_HINTS=STATUS_HINTS,
        KINDS=[k.value for k in Kind],
        SEVERITIES=[s.value for s in Severity],
        STATUSES=[s.value for s in Status],
    )
    return env


TEMPLATES = _env()


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def settings_of(request: Request) -> Settings:
    """The settings of the app serving the page (the notifications API's, which the dashboard
    shares: see app.py)."""
    s: Settings = request.app.state.settings
    return s


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    current: bool


def _nav(request: Request, v: Viewer | None) -> list[NavItem]:
    if v is None:
        return []
    items: list[tuple[str, str]] = []
    if may_use(v.principal, Capability.ALERT_READ):
        items.append(("/dashboard/alerts", "Alerts"))
    if may_use(v.principal, Capability.FIGURES_READ):
        items.append(("/dashboard/overview", "Overview"))
    if v.has(Role.SERVICE_STAFF, Role.CLINICIAN, Role.PARTNER):
        items.append(("/dashboard/worklist", "Triage worklist"))
    items.append(("/dashboard/directory", "Directory"))
    if may_use(v.principal, Capability.CLIENTS_MANAGE):
        items.append(("/dashboard/partner-clients", "Partner clients"))
    path = request.url.path
    return [NavItem(h, label, path == h or path.startswith(h + "/")) for h, label in items]


def quiet_viewer(request: Request) -> Viewer | None:
    """The signed-in user, or None (for pages that anyone may see, such as an error)."""
    try:
        return session.viewer(request)
    except LoginRequired:
        return None


def render(
    request: Request,
    template: str,
    *,
    title: str,
    viewer: Viewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash_code = request.cookies.get(session.FLASH_COOKIE)
    html = TEMPLATES.get_template(template).render(
        title=title,
        viewer=viewer,
        nav=_nav(request, viewer),
        now=datetime.now(UTC),
        local=session.local_mode(settings_of(request)),
        path=request.url.path,
        flash=FLASH_MESSAGES.get(flash_code or ""),
        **context,
    )
    issuer = urlsplit(settings_of(request).issuer)
    csp = CONTENT_SECURITY_POLICY.format(issuer=f"{issuer.scheme}://{issuer.netloc}")
    resp = HTMLResponse(
        html, status_code=status, headers={"Content-Security-Policy": csp, **SECURITY_HEADERS}
    )
    if flash_code:
        resp.delete_cookie(
            session.FLASH_COOKIE, path="/dashboard", httponly=True, samesite="strict"
        )
    return resp


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})


def alert_ref(alert: str | None) -> str | None:
    """An alert id to link back to (only its shape is checked: it is not read here)."""
    if alert and len(alert) <= 300 and alert.isprintable() and " " not in alert:
        return alert
    return None
