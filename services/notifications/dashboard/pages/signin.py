"""Signing in and out: where each user starts, the local stack's sign-in (one button per demo
user; none in production, where the ICS's identity provider signs people in) and signing out.
The session itself (cookie, CSRF, timeouts) is session.py's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from services.notifications.dashboard import session
from services.notifications.dashboard.rendering import quiet_viewer, redirect, render, settings_of
from services.notifications.dashboard.session import ViewerDep
from shared.auth import verify_token
from shared.errors import NotFound
from shared.settings import get_settings

router = APIRouter()

NO_DEV_SIGN_IN = (
    "there is no development sign-in in production; sign in through your "
    "organisation's identity provider"
)


async def home(request: Request) -> Response:
    """Where each user starts."""
    v = session.viewer(request)
    return redirect(session.home_for(v.principal))


def _login_page(
    request: Request, *, status: int = 200, error: str | None = None, nxt: str | None = None
) -> HTMLResponse:
    s = settings_of(request)
    login_token = session.new_login_token()
    resp = render(
        request,
        "login.html",
        title="Sign in",
        viewer=quiet_viewer(request),
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


@router.get("/login")
async def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    """The local stack's sign-in: one button per demo user (404 in production)."""
    if not session.local_mode(settings_of(request)):
        raise NotFound(NO_DEV_SIGN_IN)
    return _login_page(request, nxt=session.safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in as a demo user (local mode only)."""
    s = settings_of(request)
    if not session.local_mode(s):
        raise NotFound(NO_DEV_SIGN_IN)
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
    principal = await verify_token(get_settings(), token)
    resp = redirect(nxt or session.home_for(principal))
    await session.start_session(request, resp, s, token, principal)
    resp.delete_cookie(
        session.LOGIN_COOKIE,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=not session.local_mode(s),
    )
    return resp


@router.post("/logout")
async def logout(request: Request, v: ViewerDep) -> Response:
    """Sign out: the session ends server-side (the cookie is dead everywhere) and is forgotten."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    s = settings_of(request)
    await session.end_session(request)
    if session.local_mode(s):
        resp: Response = redirect("/dashboard/login")
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
