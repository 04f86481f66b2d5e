"""Referrals as the referrals API shows them to the user: one referral with its history, and
the receiving service's triage worklist. Read with the user's own token (clients.py), so the
referrals service's authorisation and audit apply."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response

from services.notifications import service_apis
from services.notifications.dashboard import labels
from services.notifications.dashboard.rendering import PAGE_SIZE, alert_ref, render
from services.notifications.dashboard.session import ViewerDep
from shared.errors import ValidationFailed

router = APIRouter()

#: the referral states a triage worklist may show
WORKLIST_STATES = ("submitted", "accepted", "on_hold", "booked", "did_not_attend", "attended")


@router.get("/referrals/{referral_id}")
async def referral_page(
    referral_id: Annotated[str, Path(max_length=100)],
    request: Request,
    v: ViewerDep,
    alert: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """One referral and its history, as the referrals API shows it to you."""
    api = service_apis.apis(request)
    ref, hist = await asyncio.gather(
        api.referral(v.token, referral_id),
        api.referral_history(v.token, referral_id),
        return_exceptions=True,
    )
    if isinstance(ref, BaseException):
        raise ref
    history_note = None
    if isinstance(hist, service_apis.ApiError):
        history_note, hist = f"The history could not be shown: {hist.message}", []
    elif isinstance(hist, BaseException):
        raise hist
    return render(
        request,
        "referral.html",
        title=f"Referral to {labels.category_label(ref.get('service_category', ''))}",
        viewer=v,
        r=ref,
        history=hist,
        history_note=history_note,
        alert=alert_ref(alert),
    )


@router.get("/worklist")
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
    data = await service_apis.apis(request).worklist(
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
