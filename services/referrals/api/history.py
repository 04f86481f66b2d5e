"""Routes for the historical import: the integration service records referrals an EHR already
holds, with their past dates, and reads back how far an import got (its credential only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from services.referrals import history_import
from services.referrals.api.reads import ERRORS
from services.referrals.config import get_referrals_settings
from services.referrals.schemas import (
    SOURCE_SYSTEM,
    HistoryImportIn,
    HistoryImportOut,
    HistoryStatusOut,
)
from shared.auth import CurrentPrincipal
from shared.web import SessionDep, client_ip

router = APIRouter()


@router.post(
    "/referrals/history",
    status_code=201,
    response_model=HistoryImportOut,
    responses={**ERRORS, 200: {"description": "The referral was already imported"}},
    tags=["history"],
)
async def import_referral_history(
    body: HistoryImportIn, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Record a referral a source system already holds, with every step it took and when
    (the integration service's credential only). 201 when this created the referral; 200 when
    it existed (the same history: nothing new; a longer one: its new steps applied)."""
    result = await history_import.import_history(
        session=session,
        principal=principal,
        cmd=body,
        settings=request.app.state.settings,
        config=get_referrals_settings(),
        client_ip=client_ip(request),
    )
    out = HistoryImportOut(
        referral_id=result.referral.id,
        created=result.created,
        events=result.events,
        steps_applied=result.events,
        stored_steps=result.stored_steps,
        state=result.referral.state,
    )
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=201 if result.created else 200,
        headers={"Location": f"/referrals/{result.referral.id}"},
    )


@router.get(
    "/referrals/history/{source_system}/{source_ref}",
    response_model=HistoryStatusOut,
    responses=ERRORS,
    tags=["history"],
)
async def referral_history_status(
    source_system: Annotated[str, Path(pattern=SOURCE_SYSTEM)],
    source_ref: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> HistoryStatusOut:
    """How far the import of one source referral got: its Waymark id and how many of the
    source's steps are stored (the integration service's credential only)."""
    status = await history_import.history_status(
        session=session,
        principal=principal,
        source_system=source_system,
        source_ref=source_ref,
        config=get_referrals_settings(),
        client_ip=client_ip(request),
    )
    return HistoryStatusOut(
        referral_id=status.referral.id,
        source_system=source_system,
        source_ref=source_ref,
        stored_steps=status.stored_steps,
        state=status.referral.state,
        last_step_at=status.last_step_at,
    )
