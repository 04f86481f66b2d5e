"""The alert inbox's pages: the list (counts, filters, the live rows), one alert (why, the
journey as a timeline, the person's referrals and care plan, what to do) and the four
actions. The inbox is the notifications service's own data, read in-process and audited here
as the alert API audits it; the journey is asked of its workflow, the referrals and the plan of
their services' APIs as the user (clients.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.notifications import service_apis
from services.notifications.alerts import domain, handlers
from services.notifications.alerts.domain import Action, Kind, Severity, Sort, Status
from services.notifications.dashboard import clients, session, timeline, timeline_svg
from services.notifications.dashboard.labels import FLASH_MESSAGES, SNOOZE_CHOICES
from services.notifications.dashboard.rendering import (
    PAGE_SIZE,
    alert_title,
    redirect,
    render,
    settings_of,
    wants_json,
)
from services.notifications.dashboard.session import Viewer, ViewerDep
from services.notifications.encounters import repository as contacts_repository
from shared.audit import record_audit
from shared.auth import Role
from shared.db import unit_of_work
from shared.errors import NotFound, ValidationFailed
from shared.web import client_ip

router = APIRouter()


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


def _filter(request: Request, v: Viewer, q: ListQuery) -> domain.AlertFilter:
    ics = settings_of(request).ics
    domain.check_may_read(v.principal, ics)
    return domain.build_filter(
        ics=ics,
        actor=v.principal.identity,
        now=datetime.now(UTC),
        kind=q.kind,
        severity=q.severity,
        status=q.status,
        assignee=q.assignee or None,
        patient_id=q.patient_id or None,
    )


def _matches(row: Any, f: domain.AlertFilter) -> bool:
    """Whether an alert belongs in a list with these filters (those the page offers)."""
    return (
        (not f.kinds or row.kind in f.kinds)
        and (not f.severities or row.severity in f.severities)
        and row.status in f.statuses
        and (not f.unassigned or row.assignee is None)
        and (f.assignee is None or row.assignee == f.assignee)
        and (f.patient_id is None or row.patient_id == f.patient_id)
    )


@router.get("/alerts")
async def alerts_page(request: Request, v: ViewerDep, q: ListQueryDep) -> Response:
    """The alert inbox: counts, filters, the list (live), actions."""
    f = _filter(request, v, q)
    async with unit_of_work(request.app.state.sessions) as db:
        rows, total = await handlers.list_alerts(
            db, f, sort=q.sort, limit=PAGE_SIZE, offset=(q.page - 1) * PAGE_SIZE
        )
        counts = await handlers.count_alerts(db, f)
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
    items = [handlers.alert_out(r) for r in rows]
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


@router.get("/alert-rows/{alert_id:path}")
async def alert_row(
    alert_id: Annotated[str, Path(max_length=300)], request: Request, v: ViewerDep, q: ListQueryDep
) -> Response:
    """One alert's row as the list with these filters shows it (none if it no longer belongs
    there), with the counts: what the live list swaps in when the stream says it changed."""
    f = _filter(request, v, q)
    async with unit_of_work(request.app.state.sessions) as db:
        row = await handlers.get_alert(db, alert_id)
        if row is not None and row.ics != f.ics:
            row = None
        counts = await handlers.count_alerts(db, f)
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
    item = handlers.alert_out(row) if row is not None and _matches(row, f) else None
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
    api: service_apis.Apis, token: str, patient_id: str
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return await api.care_plan_summary(token, patient_id), None
    except service_apis.ApiError as exc:
        if exc.status == 403:
            return None, (
                "No consent to see the care plan: the person has not agreed to "
                "share it with your organisation."
            )
        if exc.status == 404:
            return None, "No care plan is recorded for this person."
        return None, f"The care plan could not be shown: {exc.message}"


async def _signpost(
    api: service_apis.Apis, token: str, service_id: str | None
) -> dict[str, Any] | None:
    if not service_id:
        return None
    try:
        return await api.service(token, service_id)
    except service_apis.ApiError:
        return {"id": service_id, "name": None}


@router.get("/alerts/{alert_id:path}")
async def alert_page(
    alert_id: Annotated[str, Path(max_length=300)],
    request: Request,
    v: ViewerDep,
    signpost: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """One alert: why (the journey's explanation and evidence), the journey as a timeline,
    the person's referrals and care plan, and what to do."""
    s = settings_of(request)
    domain.check_may_read(v.principal, s.ics)
    async with unit_of_work(request.app.state.sessions) as db:
        row = await handlers.get_alert(db, alert_id)
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
        hist = await handlers.history(db, alert_id)
        # the person's contacts outside referrals, for the timeline: patient data, read by
        # whoever may see this alert's journey, audited as such
        contacts = await contacts_repository.person_contacts(db, row.patient_id)
        record_audit(
            db,
            principal=v.principal,
            action="read",
            resource_type="Contacts",
            patient_id=row.patient_id,
            client_ip=client_ip(request),
            detail=f"dashboard timeline: {len(contacts)} contacts",
        )
    a = handlers.alert_out(row)
    api = service_apis.apis(request)
    journey, referrals, (plan, plan_note), service = await asyncio.gather(
        clients.journey(clients.explainer(request), patient_id=row.patient_id, alert_id=alert_id),
        clients.gather_referrals(api, v.token, list(row.referral_ids or [])[:10]),
        _care_plan(api, v.token, row.patient_id),
        _signpost(api, v.token, signpost),
    )
    now = datetime.now(UTC)
    tl = timeline.build(
        journey.episodes,
        now=now,
        highlight=row.referral_ids or [],
        evidence=journey.evidence,
        contacts=contacts,
    )
    svg = timeline_svg.render_svg(
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
        contacts=tl.contact_marks,
        contacts_capped=len(contacts) >= contacts_repository.PERSON_LIMIT,
        tracks=numbers,
        referrals=referrals,
        person=person,
        plan=plan,
        plan_note=plan_note,
        signpost=service,
        next_url=f"/dashboard/alerts/{quote(alert_id, safe='')}",
        may_act=v.has(Role.COORDINATOR),
    )


@router.post("/alerts/{alert_id:path}/{action}")
async def act(
    alert_id: Annotated[str, Path(max_length=300)], action: Action, request: Request, v: ViewerDep
) -> Response:
    """Acknowledge, assign, snooze or resolve an alert (a form, or the script's fetch)."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    s = settings_of(request)
    version = form.get("version", "")
    if_match = f'W/"{version}"' if version.isdigit() and len(version) <= 9 else None
    args: dict[str, Any] = {}
    if action is Action.ASSIGN:
        args["assignee"] = form.get("assignee", "").strip() or domain.ME
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
        row = await handlers.take_action(
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
            {"alert": handlers.alert_out(row).model_dump(mode="json"), "message": message},
            headers={"Cache-Control": "no-store"},
        )
    resp = redirect(
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
