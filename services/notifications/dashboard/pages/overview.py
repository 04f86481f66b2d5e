"""The ICS leads' overview: loops and stalls per 1,000 referrals by month and by category of
service, as charts with their words and tables, and the median days to triage and to
treatment (the figures: the alert inbox's report, alerts/reports.py); and unplanned contacts
per 1,000 people, by kind of contact (encounters/reports.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.notifications.alerts import reports
from services.notifications.config import ContactFigureSettings
from services.notifications.dashboard import charts, labels
from services.notifications.dashboard.rendering import render, settings_of
from services.notifications.dashboard.session import ViewerDep
from services.notifications.encounters import reports as contact_reports
from shared.access import Capability, may_use
from shared.audit import record_audit
from shared.db import unit_of_work
from shared.errors import Forbidden
from shared.web import client_ip

router = APIRouter()


def _month_label(m: Any, first: bool) -> str:
    return f"{m:%b %Y}" if first or m.month == 1 else f"{m:%b}"


@router.get("/overview")
async def overview_page(
    request: Request, v: ViewerDep, months: Annotated[int, Query(ge=1, le=36)] = 12
) -> Response:
    """For ICS leads: loops and stalls per 1,000 referrals, by category and by month, and the
    median days to triage and to treatment."""
    s = settings_of(request)
    if not may_use(v.principal, Capability.FIGURES_READ) or v.principal.ics != s.ics:
        raise Forbidden(f"the overview is for {s.ics}'s coordinators and leads")
    cf: ContactFigureSettings = request.app.state.contact_figures
    async with unit_of_work(request.app.state.sessions) as db:
        ov = await reports.overview(db, ics=s.ics, months=months)
        contacts = await contact_reports.unplanned_contacts(
            db, days=cf.window_days, frequent_above=cf.frequent_above
        )
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
    cat_labels = [labels.category_label(r.key) for r in ov.by_category]
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
    contacts_table = charts.data_table(
        [k.label for k in contacts.by_kind],
        [
            charts.Series("Unplanned contacts", [k.contacts for k in contacts.by_kind]),
            charts.Series("People", [k.people for k in contacts.by_kind]),
            charts.Series("Per 1,000 people", [k.per_1000 for k in contacts.by_kind]),
        ],
        caption=f"Unplanned contacts by kind, the last {contacts.days} days",
        label_header="Kind of contact",
        table_id="table-contacts",
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
        contacts=contacts,
        contacts_table=contacts_table,
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
        f"referrals: {labels.category_label(most.key)} (loops "
        f"{charts.fmt(most.loops_per_1000)}, stalls {charts.fmt(most.stalls_per_1000)}). "
        "The figures are in the table below."
    )
