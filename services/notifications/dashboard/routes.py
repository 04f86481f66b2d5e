"""The dashboard's pages, under /dashboard on the notifications app (api.py includes `router`).

Server-rendered Jinja2 (autoescape on); a small script enhances them (the live alert list
over Server-Sent Events, actions without a reload). Every page works without the script.

- Sign-in: session.py (cookie, CSRF, the local demo users).
- The alert inbox is the notifications service's own data: read in-process (alert_store) and
  audited here as the API audits it. Everything else is another service's, read through its
  API with the user's own token (clients.py), so its authorisation and audit apply.
- Errors are pages: every failure on a dashboard route renders an HTML page with the right
  status (a JSON problem for the script's requests), never a stack trace; a missing or
  expired session sends the browser to sign in (local mode).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.notifications.alerts import domain as alerts
from services.notifications.alerts import handlers as alert_store
from services.notifications.alerts.domain import Action, Kind, Severity, Sort, Status
from services.notifications.dashboard import charts, clients, metrics, session, timeline
from services.notifications.dashboard.session import LoginRequired, Viewer
from shared.access import Capability, may_use
from shared.audit import record_audit
from shared.auth import Role, verify_token
from shared.db import unit_of_work
from shared.errors import Forbidden, NotFound, ValidationFailed, WaymarkError
from shared.problems import problem
from shared.settings import Settings, get_settings
from shared.web import client_ip

logger = logging.getLogger(__name__)

HERE = FilePath(__file__).parent
PAGE_SIZE = 50

# --- words ------------------------------------------------------------------------------------

KIND_NAMES = {
    "stalled": "Stalled",
    "looping": "Looping",
    "safety": "Safety",
    "pathway": "Pathway prompt",
}
RULE_NAMES = {
    "stalled.not_triaged": "not triaged in time",
    "stalled.not_booked": "accepted but not booked",
    "stalled.no_outcome": "no outcome after the appointment",
    "stalled.no_activity": "no activity",
    "stalled.rtt_breach": "over 18 weeks from referral to treatment",
    "stalled.no_next_step": "no next step after an ending",
    "looping.re_referral": "referred again after an ending",
    "looping.ping_pong": "back and forth between services",
    "looping.returned_repeatedly": "returned to the referrer repeatedly",
    "looping.frequent_contact": "frequent contact with services",
    "looping.closed_doors": "several services closed without treatment",
    "safety.phq9_item9": "PHQ-9 item 9 answered above 0",
    "safety.high_risk_band": "high-risk screening result",
    "pathway.start_back_high": "STarT Back high risk: physiotherapy with psychological support",
    "pathway.severe_mood": "severe depression or anxiety score, no mental health referral",
}
STATUS_NAMES = {
    "open": "open",
    "acknowledged": "acknowledged",
    "escalated": "escalated",
    "snoozed": "snoozed",
    "progressing": "progressing",
    "resolved": "resolved",
}
#: what a status means, where its name alone doesn't say (beside its filter and its tag)
STATUS_HINTS = {
    "progressing": "the cause has gone: the person has since been accepted and "
    "seen; off the worklist until resolved"
}
#: how long a coordinator may snooze an alert for (the inbox allows at most 30 days)
SNOOZE_CHOICES: dict[str, tuple[str, timedelta]] = {
    "4h": ("4 hours", timedelta(hours=4)),
    "1d": ("1 day", timedelta(days=1)),
    "3d": ("3 days", timedelta(days=3)),
    "7d": ("1 week", timedelta(days=7)),
    "14d": ("2 weeks", timedelta(days=14)),
    "28d": ("4 weeks", timedelta(days=28)),
}
#: the coded reasons for resolving an alert (events carry codes, never free text)
RESOLUTIONS: dict[str, str] = {
    "contacted-person": "Contacted the person",
    "referral-progressed": "The referral has moved on",
    "signposted": "Signposted to another service",
    "referred-elsewhere": "Referred to a more suitable service",
    "duplicate": "Duplicate of another alert",
    "no-action-needed": "No action needed",
}
FLASH_MESSAGES = {
    "acknowledge": "Alert acknowledged.",
    "assign": "Alert assigned.",
    "snooze": "Alert snoozed.",
    "resolve": "Alert resolved.",
    "signed-out": "You have signed out.",
}
#: the referral states a triage worklist may show
WORKLIST_STATES = ("submitted", "accepted", "on_hold", "booked", "did_not_attend", "attended")
RADIUS_CHOICES = ("2", "5", "10", "25", "50")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# --- templates ----------------------------------------------------------------------------------

UK = timeline.UK


def _when(value: Any) -> str:
    when = timeline.parse_time(value)
    return timeline.when_text(when) if when else "–"


def _day(value: Any) -> str:
    when = timeline.parse_time(value)
    return timeline.day_text(when) if when else "–"


def _ago(value: Any, now: datetime) -> str:
    when = timeline.parse_time(value)
    if when is None:
        return "–"
    delta = now - when
    if delta.total_seconds() < 60:
        return "just now"
    return f"{timeline.duration_text(delta)} ago"


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
        category=lambda v: timeline.category_label(v if isinstance(v, str) else ""),
        state=lambda v: timeline.state_label(v if isinstance(v, str) else ""),
        duration=timeline.duration_text,
        severity_rank=lambda s: alerts.SEVERITY_RANK.get(Severity(str(s)), 9),
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


def _settings(request: Request) -> Settings:
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
    path = request.url.path
    return [NavItem(h, label, path == h or path.startswith(h + "/")) for h, label in items]


def _quiet_viewer(request: Request) -> Viewer | None:
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
        local=session.local_mode(_settings(request)),
        path=request.url.path,
        flash=FLASH_MESSAGES.get(flash_code or ""),
        **context,
    )
    resp = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if flash_code:
        resp.delete_cookie(
            session.FLASH_COOKIE, path="/dashboard", httponly=True, samesite="strict"
        )
    return resp


ERROR_TITLES = {
    400: "There is a problem with the request",
    401: "Sign in to continue",
    403: "You cannot do this",
    404: "Page not found",
    409: "This cannot be done now",
    412: "This has changed since you looked",
    413: "The form is too large",
    422: "Check what you entered",
    503: "Sorry, a service is not available",
}


def error_page(
    request: Request, status: int, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    title = ERROR_TITLES.get(status, "Sorry, there is a problem with the service")
    if wants_json(request):
        return problem(
            status,
            title,
            detail,
            slug=f"dashboard-{status}",
            instance=request.url.path,
            headers=headers,
        )
    v = _quiet_viewer(request)
    referer, base = request.headers.get("referer", ""), str(request.base_url).rstrip("/")
    back = session.safe_next(referer[len(base) :]) if referer.startswith(base + "/") else None
    resp = render(
        request,
        "error.html",
        title=title,
        viewer=v,
        status=status,
        detail=detail,
        back=back,
        status_code=status,
    )
    for k, val in (headers or {}).items():
        resp.headers[k] = val
    return resp


def _login_needed(request: Request, exc: LoginRequired) -> Response:
    s = _settings(request)
    if wants_json(request):
        return problem(
            401, "Not authenticated", exc.reason, slug="unauthenticated", instance=request.url.path
        )
    if session.local_mode(s):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        nxt = session.safe_next(target) if request.method == "GET" else None
        query = urlencode({"next": nxt}) if nxt else ""
        return RedirectResponse(
            "/dashboard/login" + (f"?{query}" if query else ""),
            303,
            headers={"Cache-Control": "no-store"},
        )
    return error_page(
        request,
        401,
        "Sign in through your organisation's identity provider "
        f"to use the dashboard ({exc.reason}).",
        headers={"WWW-Authenticate": "Bearer"},
    )


class PageRoute(APIRoute):
    """A dashboard route: every failure becomes a page (or, for the script, a problem+json);
    no session means signing in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return _login_needed(request, exc)
            except RequestValidationError as exc:
                words = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: "
                    f"{e.get('msg', '')}"
                    for e in list(exc.errors())[:5]
                )
                return error_page(request, 422, f"Some values are not valid ({words}).")
            except clients.ApiError as exc:
                status = exc.status if 400 <= exc.status < 600 else 502
                return error_page(request, status, exc.message)
            except WaymarkError as exc:
                return error_page(request, exc.status, exc.message)
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code, str(exc.detail))
            except Exception:  # a bug: logged with its trace; the page says nothing internal
                logger.exception(
                    "dashboard: unhandled error on %s %s", request.method, request.url.path
                )
                return error_page(
                    request,
                    500,
                    "An unexpected error occurred; it has been logged. Try again, or go back.",
                )

        return page_handler


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await clients._close_http(app)


# every page looks the session cookie up first (session.load_session), so `viewer` is a lookup
router = APIRouter(
    route_class=PageRoute,
    lifespan=_lifespan,
    include_in_schema=False,
    dependencies=[Depends(session.load_session)],
)
ViewerDep = Annotated[Viewer, Depends(session.viewer)]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})


# --- sign-in ------------------------------------------------------------------------------------


@router.get("/dashboard")
async def home(request: Request) -> Response:
    """Where each user starts."""
    v = session.viewer(request)
    return _redirect(session.home_for(v.principal))


def _login_page(
    request: Request, *, status: int = 200, error: str | None = None, nxt: str | None = None
) -> HTMLResponse:
    s = _settings(request)
    login_token = session.new_login_token()
    resp = render(
        request,
        "login.html",
        title="Sign in",
        viewer=_quiet_viewer(request),
        status=status,
        users=session.demo_users(s),
        login_csrf=login_token,
        next=nxt or "",
        error=error,
    )
    resp.set_cookie(
        session.LOGIN_COOKIE,
        login_token,
        max_age=3600,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=not session.local_mode(s),
    )
    return resp


@router.get("/dashboard/login")
async def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    """The local stack's sign-in: one button per demo user (404 in production)."""
    if not session.local_mode(_settings(request)):
        raise NotFound(
            "there is no development sign-in in production; sign in through your "
            "organisation's identity provider"
        )
    return _login_page(request, nxt=session.safe_next(next))


@router.post("/dashboard/login")
async def login(request: Request) -> Response:
    """Sign in as a demo user (local mode only)."""
    s = _settings(request)
    if not session.local_mode(s):
        raise NotFound(
            "there is no development sign-in in production; sign in through your "
            "organisation's identity provider"
        )
    form = await session.read_form(request)
    nxt = session.safe_next(form.get("next"))
    if not session.check_login_csrf(request, form):
        return _login_page(
            request,
            status=400,
            nxt=nxt,
            error="The sign-in page had expired. Choose who to sign in as again.",
        )
    user = session.demo_user(s, form.get("user", ""))
    if user is None:
        return _login_page(
            request, status=422, nxt=nxt, error="Choose one of the demo users to sign in as."
        )
    token = session.mint_session(s, user)
    # verified as every later request will be: a key mismatch shows here, not on the next page
    principal = verify_token(get_settings(), token)
    resp = _redirect(nxt or session.home_for(principal))
    await session.start_session(request, resp, s, token, principal)
    resp.delete_cookie(
        session.LOGIN_COOKIE,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=not session.local_mode(s),
    )
    return resp


@router.post("/dashboard/logout")
async def logout(request: Request, v: ViewerDep) -> Response:
    """Sign out: the session ends server-side (the cookie is dead everywhere) and is forgotten."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    s = _settings(request)
    await session.end_session(request)
    if session.local_mode(s):
        resp: Response = _redirect("/dashboard/login")
    else:
        resp = render(request, "signed_out.html", title="You have signed out", viewer=None)
    session.clear_session(resp, s)
    resp.set_cookie(
        session.FLASH_COOKIE,
        "signed-out",
        max_age=60,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=not session.local_mode(s),
    )
    return resp


# --- static files -------------------------------------------------------------------------------

STATIC_TYPES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


@router.get("/dashboard/static/{name}")
async def static(name: str, request: Request) -> Response:
    """The stylesheet and the script (nothing else is served from here)."""
    if name not in STATIC_TYPES:
        raise NotFound(f"no file {name}")
    body = (HERE / "static" / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=STATIC_TYPES[name], headers=headers)


# --- the alert inbox ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """The worklist's filters, sort and page, as the address carries them."""

    kind: list[Kind]
    severity: list[Severity]
    status: list[Status]
    assignee: str
    patient_id: str
    sort: Sort
    page: int

    def params(self, *, page: int | None = None) -> list[tuple[str, str]]:
        out = [("kind", k.value) for k in self.kind]
        out += [("severity", s.value) for s in self.severity]
        out += [("status", s.value) for s in self.status]
        if self.assignee:
            out.append(("assignee", self.assignee))
        if self.patient_id:
            out.append(("patient_id", self.patient_id))
        out.append(("sort", self.sort.value))
        if page is not None and page > 1:
            out.append(("page", str(page)))
        return out

    def query(self, *, page: int | None = None) -> str:
        return urlencode(self.params(page=page))


def _list_query(
    kind: Annotated[list[Kind] | None, Query()] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    status: Annotated[list[Status] | None, Query()] = None,
    assignee: Annotated[str, Query(max_length=300)] = "",
    patient_id: Annotated[str, Query(max_length=80)] = "",
    sort: Sort = Sort.SEVERITY,
    page: Annotated[int, Query(ge=1, le=2000)] = 1,
) -> ListQuery:
    return ListQuery(
        kind or [], severity or [], status or [], assignee.strip(), patient_id.strip(), sort, page
    )


ListQueryDep = Annotated[ListQuery, Depends(_list_query)]


def _filter(request: Request, v: Viewer, q: ListQuery) -> alerts.AlertFilter:
    ics = _settings(request).ics
    alerts.check_may_read(v.principal, ics)
    return alerts.build_filter(
        ics=ics,
        actor=v.principal.identity,
        now=datetime.now(UTC),
        kind=q.kind,
        severity=q.severity,
        status=q.status,
        assignee=q.assignee or None,
        patient_id=q.patient_id or None,
    )


def _matches(row: Any, f: alerts.AlertFilter) -> bool:
    """Whether an alert belongs in a list with these filters (those the page offers)."""
    return (
        (not f.kinds or row.kind in f.kinds)
        and (not f.severities or row.severity in f.severities)
        and row.status in f.statuses
        and (not f.unassigned or row.assignee is None)
        and (f.assignee is None or row.assignee == f.assignee)
        and (f.patient_id is None or row.patient_id == f.patient_id)
    )


@router.get("/dashboard/alerts")
async def alerts_page(request: Request, v: ViewerDep, q: ListQueryDep) -> Response:
    """The alert inbox: counts, filters, the list (live), actions."""
    f = _filter(request, v, q)
    async with unit_of_work(request.app.state.sessions) as db:
        rows, total = await alert_store.list_alerts(
            db, f, sort=q.sort, limit=PAGE_SIZE, offset=(q.page - 1) * PAGE_SIZE
        )
        counts = await alert_store.count_alerts(db, f)
        ip = client_ip(request)
        for r in rows:
            record_audit(
                db,
                principal=v.principal,
                action="read",
                resource_type="Alert",
                resource_id=r.alert_id,
                patient_id=r.patient_id,
                client_ip=ip,
                detail="dashboard list",
            )
        record_audit(
            db,
            principal=v.principal,
            action="read",
            resource_type="AlertCounts",
            client_ip=ip,
            detail="dashboard counts",
        )
    items = [alert_store.alert_out(r) for r in rows]
    first = (q.page - 1) * PAGE_SIZE + 1 if items else 0
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "alerts.html",
        title="Alerts",
        viewer=v,
        q=q,
        items=items,
        total=total,
        counts=counts,
        first=first,
        last=first + len(items) - 1,
        pages=pages,
        next_url=f"/dashboard/alerts?{q.query(page=q.page)}",
        filter_query=q.query(),
    )


@router.get("/dashboard/alert-rows/{alert_id:path}")
async def alert_row(
    alert_id: Annotated[str, Path(max_length=300)], request: Request, v: ViewerDep, q: ListQueryDep
) -> Response:
    """One alert's row as the list with these filters shows it (none if it no longer belongs
    there), with the counts: what the live list swaps in when the stream says it changed."""
    f = _filter(request, v, q)
    async with unit_of_work(request.app.state.sessions) as db:
        row = await alert_store.get_alert(db, alert_id)
        if row is not None and row.ics != f.ics:
            row = None
        counts = await alert_store.count_alerts(db, f)
        ip = client_ip(request)
        if row is not None:
            record_audit(
                db,
                principal=v.principal,
                action="read",
                resource_type="Alert",
                resource_id=row.alert_id,
                patient_id=row.patient_id,
                client_ip=ip,
                detail="dashboard live row",
            )
        record_audit(
            db,
            principal=v.principal,
            action="read",
            resource_type="AlertCounts",
            client_ip=ip,
            detail="dashboard counts",
        )
    item = alert_store.alert_out(row) if row is not None and _matches(row, f) else None
    return render(
        request,
        "alert_row_fragment.html",
        title="Alert row",
        viewer=v,
        item=item,
        counts=counts,
        q=q,
        next_url=f"/dashboard/alerts?{q.query()}",
    )


async def _care_plan(
    api: clients.Apis, token: str, patient_id: str
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return await api.care_plan_summary(token, patient_id), None
    except clients.ApiError as exc:
        if exc.status == 403:
            return None, (
                "No consent to see the care plan: the person has not agreed to "
                "share it with your organisation."
            )
        if exc.status == 404:
            return None, "No care plan is recorded for this person."
        return None, f"The care plan could not be shown: {exc.message}"


async def _signpost(api: clients.Apis, token: str, service_id: str | None) -> dict[str, Any] | None:
    if not service_id:
        return None
    try:
        return await api.service(token, service_id)
    except clients.ApiError:
        return {"id": service_id, "name": None}


@router.get("/dashboard/alerts/{alert_id:path}")
async def alert_page(
    alert_id: Annotated[str, Path(max_length=300)],
    request: Request,
    v: ViewerDep,
    signpost: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """One alert: why (the journey's explanation and evidence), the journey as a timeline,
    the person's referrals and care plan, and what to do."""
    s = _settings(request)
    alerts.check_may_read(v.principal, s.ics)
    async with unit_of_work(request.app.state.sessions) as db:
        row = await alert_store.get_alert(db, alert_id)
        if row is None or row.ics != s.ics:
            raise NotFound(f"There is no alert {alert_id} in this inbox.")
        record_audit(
            db,
            principal=v.principal,
            action="read",
            resource_type="Alert",
            resource_id=row.alert_id,
            patient_id=row.patient_id,
            client_ip=client_ip(request),
            detail="dashboard detail",
        )
        hist = await alert_store.history(db, alert_id)
    a = alert_store.alert_out(row)
    api = clients.apis(request)
    journey, referrals, (plan, plan_note), service = await asyncio.gather(
        clients.journey(clients.explainer(request), patient_id=row.patient_id, alert_id=alert_id),
        clients.gather_referrals(api, v.token, list(row.referral_ids or [])[:10]),
        _care_plan(api, v.token, row.patient_id),
        _signpost(api, v.token, signpost),
    )
    now = datetime.now(UTC)
    tl = timeline.build(
        journey.episodes, now=now, highlight=row.referral_ids or [], evidence=journey.evidence
    )
    svg = timeline.render_svg(
        tl, id_prefix="journey", title=f"Journey timeline of person {row.patient_id}"
    )
    numbers = {t.referral_id: t for t in tl.tracks}
    person = next((r for _, r, _ in referrals if r), None)
    return render(
        request,
        "alert.html",
        title=alert_title(a),
        viewer=v,
        a=a,
        history=hist,
        journey=journey,
        tl=tl,
        svg=svg,
        rows=tl.rows(),
        tracks=numbers,
        referrals=referrals,
        person=person,
        plan=plan,
        plan_note=plan_note,
        signpost=service,
        next_url=f"/dashboard/alerts/{quote(alert_id, safe='')}",
        may_act=v.has(Role.COORDINATOR),
    )


@router.post("/dashboard/alerts/{alert_id:path}/{action}")
async def act(
    alert_id: Annotated[str, Path(max_length=300)], action: Action, request: Request, v: ViewerDep
) -> Response:
    """Acknowledge, assign, snooze or resolve an alert (a form, or the script's fetch)."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    s = _settings(request)
    version = form.get("version", "")
    if_match = f'W/"{version}"' if version.isdigit() and len(version) <= 9 else None
    args: dict[str, Any] = {}
    if action is Action.ASSIGN:
        args["assignee"] = form.get("assignee", "").strip() or alerts.ME
    elif action is Action.SNOOZE:
        choice = SNOOZE_CHOICES.get(form.get("for", ""))
        if choice is None:
            raise ValidationFailed("Choose how long to snooze the alert for.")
        args["until"] = datetime.now(UTC) + choice[1]
    elif action is Action.RESOLVE:
        code = form.get("resolution", "").strip()
        if not code:
            raise ValidationFailed("Choose a reason for resolving the alert.")
        args["resolution"] = code
    async with unit_of_work(request.app.state.sessions) as db:
        row = await alert_store.take_action(
            session=db,
            principal=v.principal,
            settings=s,
            alert_id=alert_id,
            action=action,
            if_match=if_match,
            client_ip=client_ip(request),
            **args,
        )
    message = FLASH_MESSAGES[action.value]
    if wants_json(request):
        return JSONResponse(
            {"alert": alert_store.alert_out(row).model_dump(mode="json"), "message": message},
            headers={"Cache-Control": "no-store"},
        )
    resp = _redirect(
        session.safe_next(form.get("next")) or f"/dashboard/alerts/{quote(alert_id, safe='')}"
    )
    resp.set_cookie(
        session.FLASH_COOKIE,
        action.value,
        max_age=60,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=not session.local_mode(s),
    )
    return resp


# --- referrals (the referrals API, as the user) --------------------------------------------------


def _alert_ref(alert: str | None) -> str | None:
    """An alert id to link back to (only its shape is checked: it is not read here)."""
    if alert and len(alert) <= 300 and alert.isprintable() and " " not in alert:
        return alert
    return None


@router.get("/dashboard/referrals/{referral_id}")
async def referral_page(
    referral_id: Annotated[str, Path(max_length=100)],
    request: Request,
    v: ViewerDep,
    alert: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """One referral and its history, as the referrals API shows it to you."""
    api = clients.apis(request)
    ref, hist = await asyncio.gather(
        api.referral(v.token, referral_id),
        api.referral_history(v.token, referral_id),
        return_exceptions=True,
    )
    if isinstance(ref, BaseException):
        raise ref
    history_note = None
    if isinstance(hist, clients.ApiError):
        history_note, hist = f"The history could not be shown: {hist.message}", []
    elif isinstance(hist, BaseException):
        raise hist
    return render(
        request,
        "referral.html",
        title=f"Referral to {timeline.category_label(ref.get('service_category', ''))}",
        viewer=v,
        r=ref,
        history=hist,
        history_note=history_note,
        alert=_alert_ref(alert),
    )


@router.get("/dashboard/worklist")
async def worklist_page(
    request: Request,
    v: ViewerDep,
    state: Annotated[list[str] | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=2000)] = 1,
) -> Response:
    """The receiving service's triage worklist: urgent first, then longest waiting."""
    states = [x for x in (state or []) if x]
    bad = [x for x in states if x not in WORKLIST_STATES]
    if bad:
        raise ValidationFailed(f"state must be one of {', '.join(WORKLIST_STATES)}")
    states = states or ["submitted"]
    data = await clients.apis(request).worklist(
        v.token, states=states, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    total = int(data.get("total", 0))
    pages = max(1, -(-total // PAGE_SIZE))
    query = urlencode([("state", x) for x in states])
    return render(
        request,
        "worklist.html",
        title="Triage worklist",
        viewer=v,
        items=data.get("items", []),
        total=total,
        page=page,
        pages=pages,
        states=states,
        all_states=WORKLIST_STATES,
        query=query,
    )


# --- the directory (the directory API, as the user) ----------------------------------------------


@router.get("/dashboard/directory")
async def directory_page(
    request: Request,
    v: ViewerDep,
    q: Annotated[str, Query(max_length=200)] = "",
    postcode: Annotated[str, Query(max_length=12)] = "",
    radius_km: Annotated[str, Query(max_length=5)] = "10",
    category: Annotated[str, Query(max_length=60)] = "",
    self_referral: Annotated[str, Query(max_length=5)] = "",
    free: Annotated[str, Query(max_length=5)] = "",
    alert: Annotated[str | None, Query(max_length=300)] = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> Response:
    """Search the directory for a service to signpost to: distance from a postcode, no map."""
    api = clients.apis(request)
    q, postcode, category = q.strip(), postcode.strip(), category.strip()
    radius = radius_km if radius_km in RADIUS_CHOICES else "10"
    searching = bool(q or postcode or category or self_referral or free)
    try:
        vocab = await api.vocabularies(v.token)
        categories = [c for c in vocab.get("categories", []) if isinstance(c, dict)]
    except clients.ApiError:
        categories = []
    params: list[tuple[str, str]] = []
    if q:
        params.append(("q", q))
    if postcode:
        params += [("postcode", postcode), ("radius_km", radius), ("include_remote", "true")]
    if category:
        params.append(("category", category))
    if self_referral == "true":
        params.append(("self_referral", "true"))
    if free == "true":
        params.append(("free", "true"))
    results: dict[str, Any] | None = None
    error = None
    status = 200
    if searching:
        try:
            results = await api.search_services(v.token, params + [("page", str(page))])
        except clients.ApiError as exc:
            if exc.status not in (400, 422):
                raise
            error, status = exc.message, 422
    alert_id = _alert_ref(alert)
    query = urlencode(params + ([("alert", alert_id)] if alert_id else []))
    return render(
        request,
        "directory.html",
        title="Find a service",
        viewer=v,
        status=status,
        form={
            "q": q,
            "postcode": postcode,
            "radius_km": radius,
            "category": category,
            "self_referral": self_referral == "true",
            "free": free == "true",
        },
        radii=RADIUS_CHOICES,
        categories=categories,
        results=results,
        error=error,
        alert=alert_id,
        query=query,
        page=page,
    )


# --- the overview (the notifications schema's own figures) --------------------------------------


def _month_label(m: Any, first: bool) -> str:
    return f"{m:%b %Y}" if first or m.month == 1 else f"{m:%b}"


@router.get("/dashboard/overview")
async def overview_page(
    request: Request, v: ViewerDep, months: Annotated[int, Query(ge=1, le=36)] = 12
) -> Response:
    """For ICS leads: loops and stalls per 1,000 referrals, by category and by month, and the
    median days to triage and to treatment."""
    s = _settings(request)
    if not may_use(v.principal, Capability.FIGURES_READ) or v.principal.ics != s.ics:
        raise Forbidden(f"the overview is for {s.ics}'s coordinators and leads")
    async with unit_of_work(request.app.state.sessions) as db:
        ov = await metrics.overview(db, ics=s.ics, months=months)
        record_audit(
            db,
            principal=v.principal,
            action="read",
            resource_type="Overview",
            client_ip=client_ip(request),
            detail=f"dashboard overview {months} months",
        )
    month_labels = [_month_label(r.month, i == 0) for i, r in enumerate(ov.by_month)]
    rate_series = [
        charts.Series("Loops per 1,000 referrals", [r.loops_per_1000 for r in ov.by_month]),
        charts.Series("Stalls per 1,000 referrals", [r.stalls_per_1000 for r in ov.by_month]),
    ]
    cat_labels = [timeline.category_label(r.key) for r in ov.by_category]
    cat_series = [
        charts.Series("Loops per 1,000 referrals", [r.loops_per_1000 for r in ov.by_category]),
        charts.Series("Stalls per 1,000 referrals", [r.stalls_per_1000 for r in ov.by_category]),
    ]
    span = f"{ov.months[0]:%B %Y} to {ov.months[-1]:%B %Y}" if ov.months else ""
    month_chart = charts.line_chart(
        month_labels,
        rate_series,
        id_prefix="by-month",
        y_label="per 1,000 referrals",
        title=f"Loops and stalls per 1,000 referrals by month, {span}",
        desc=_trend_words(ov.by_month),
    )
    cat_chart = charts.bar_chart(
        cat_labels,
        cat_series,
        id_prefix="by-category",
        x_label="per 1,000 referrals",
        title="Loops and stalls per 1,000 referrals by category of service",
        desc=_category_words(ov.by_category),
    )
    full_month_labels = [f"{r.month:%B %Y}" for r in ov.by_month]
    month_table = charts.data_table(
        full_month_labels,
        _table_series(ov.by_month),
        caption="By month of referral",
        label_header="Month",
        table_id="table-by-month",
    )
    cat_table = charts.data_table(
        cat_labels,
        _table_series(ov.by_category),
        caption="By category of service",
        label_header="Category of service",
        table_id="table-by-category",
    )
    return render(
        request,
        "overview.html",
        title="Overview",
        viewer=v,
        ov=ov,
        span=span,
        months=months,
        month_chart=month_chart,
        cat_chart=cat_chart,
        month_table=month_table,
        cat_table=cat_table,
    )


def _table_series(rows: Any) -> list[charts.Series]:
    return [
        charts.Series("Referrals", [r.referrals for r in rows]),
        charts.Series("Loops", [r.loops for r in rows]),
        charts.Series("Loops per 1,000", [r.loops_per_1000 for r in rows]),
        charts.Series("Stalls", [r.stalls for r in rows]),
        charts.Series("Stalls per 1,000", [r.stalls_per_1000 for r in rows]),
    ]


def _trend_words(rows: Any) -> str:
    known = [r for r in rows if r.referrals]
    if not known:
        return "No referrals were made in these months, so there are no rates to show."
    first, last = known[0], known[-1]
    return (
        f"{len(known)} of {len(rows)} months had referrals. Loops per 1,000 referrals went "
        f"from {charts.fmt(first.loops_per_1000)} in {first.month:%B %Y} to "
        f"{charts.fmt(last.loops_per_1000)} in {last.month:%B %Y}; stalls from "
        f"{charts.fmt(first.stalls_per_1000)} to {charts.fmt(last.stalls_per_1000)}. "
        "The figures are in the table below."
    )


def _category_words(rows: Any) -> str:
    known = [r for r in rows if r.referrals]
    if not known:
        return "No referrals to any category of service in this period."
    most = max(known, key=lambda r: (r.loops_per_1000 or 0) + (r.stalls_per_1000 or 0))
    return (
        f"{len(known)} categories of service. The most loops and stalls per 1,000 "
        f"referrals: {timeline.category_label(most.key)} (loops "
        f"{charts.fmt(most.loops_per_1000)}, stalls {charts.fmt(most.stalls_per_1000)}). "
        "The figures are in the table below."
    )


# --- everything else under /dashboard -------------------------------------------------------------


@router.api_route("/dashboard/{rest:path}", methods=["GET", "POST"])
async def not_found(rest: str, request: Request) -> Response:
    """Any other dashboard address: a page saying so."""
    if rest == "":
        return await home(request)
    raise NotFound(
        "There is no page at this address. Check it, or start from the dashboard's home page."
    )
