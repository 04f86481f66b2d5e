"""Signing in and out through the deployment's OpenID provider (relying_party.py): where each
user starts, the sign-in's start and its callback, signing out (RP-initiated logout) and the
page the provider sends the browser back to. The session itself (cookie, refresh, CSRF,
timeouts) is session.py's.

The same in every mode: locally the provider is the stack's own (devtools/idp), in an ICS its
identity provider (NHS CIS2, Entra ID, Keycloak). A page's Authorization header (API clients,
a sign-in proxy) needs none of this.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from services.notifications.dashboard import relying_party, session
from services.notifications.dashboard.relying_party import SignInFailed
from services.notifications.dashboard.rendering import quiet_viewer, redirect, render, settings_of
from services.notifications.dashboard.session import ViewerDep
from shared.auth import verify_token
from shared.errors import Unauthenticated
from shared.oidc import IssuerUnavailable
from shared.settings import Settings, get_settings

router = APIRouter()

#: the sign-in's state cookie goes only to the callback; Lax, because the provider's redirect
#: back is a navigation from another site, which a Strict cookie would not follow
LOGIN_COOKIE_PATH = "/dashboard/auth"
ShortText = Annotated[str | None, Query(max_length=4096)]


async def home(request: Request) -> Response:
    """Where each user starts."""
    v = session.viewer(request)
    return redirect(session.home_for(v.principal))


def _drop_login_cookie(resp: Response, s: Settings) -> None:
    resp.delete_cookie(
        session.LOGIN_COOKIE,
        path=LOGIN_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=not session.local_mode(s),
    )


def _problem_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """A sign-in that did not complete: what happened, and a way to start again."""
    resp = render(
        request,
        "login.html",
        title="Sign-in did not complete",
        viewer=quiet_viewer(request),
        status=status,
        error=detail,
    )
    _drop_login_cookie(resp, settings_of(request))
    return resp


@router.get("/login")
async def login(
    request: Request,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    again: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """Sign in: off to the identity provider (authorization code + PKCE), back at the callback.
    `again=1` (a session that timed out) asks the provider to authenticate the person anew."""
    s = settings_of(request)
    try:
        url, sealed = await relying_party.begin(
            s, next_url=session.safe_next(next) or "", force_login=again == "1"
        )
    except IssuerUnavailable as exc:
        return _problem_page(request, 503, exc.message)
    resp = redirect(url)
    resp.set_cookie(
        session.LOGIN_COOKIE,
        sealed,
        max_age=relying_party.LOGIN_STATE_SECONDS,
        path=LOGIN_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=not session.local_mode(s),
    )
    return resp


@router.get("/auth/callback")
async def callback(
    request: Request,
    code: ShortText = None,
    state: ShortText = None,
    error: ShortText = None,
    error_description: ShortText = None,
) -> Response:
    """Where the provider sends the browser back: the state checked, the code exchanged, the
    ID token and access token validated, and the session started."""
    s = settings_of(request)
    if error:
        words = f"{error}: {error_description}" if error_description else error
        return _problem_page(request, 400, f"The identity provider did not sign you in ({words}).")
    try:
        c = relying_party.client(s)
    except IssuerUnavailable as exc:
        return _problem_page(request, 503, exc.message)
    cookie = request.cookies.get(session.LOGIN_COOKIE, "")
    login = relying_party.open_state(c, cookie, time.time()) if cookie else None
    if login is None or not state or not hmac.compare_digest(login.state, state):
        return _problem_page(
            request,
            400,
            "This sign-in had expired or was started in another window or browser.",
        )
    if not code:
        return _problem_page(request, 400, "The identity provider sent no authorization code.")
    try:
        tokens, subject = await relying_party.exchange(s, code, login)
        # verified as every later request will be: a mismatch shows here, not on the next page
        principal = await verify_token(get_settings(), tokens.access_token)
        if principal.user != subject:
            raise SignInFailed("the access token and the ID token name different people")
    except (SignInFailed, Unauthenticated) as exc:
        return _problem_page(request, 400, exc.message)
    except IssuerUnavailable as exc:
        return _problem_page(request, 503, exc.message)
    target = login.next or session.home_for(principal)
    # a page of our own moves on, not a redirect: the session cookie is SameSite=Strict, and a
    # navigation the provider's site started would arrive without it
    resp = render(
        request, "signed_in.html", title="Signed in", viewer=None, target=target, refresh=True
    )
    await session.start_session(request, resp, s, tokens, principal)
    _drop_login_cookie(resp, s)
    return resp


@router.post("/logout")
async def logout(request: Request, v: ViewerDep) -> Response:
    """Sign out: the session ends here (the cookie is dead everywhere), its refresh token is
    revoked, and the provider ends its own session (RP-initiated logout)."""
    form = await session.read_form(request)
    session.check_csrf(v, form)
    s = settings_of(request)
    tokens = await session.end_session(request)
    target = relying_party.SIGNED_OUT_PATH
    if tokens is not None:
        await relying_party.revoke(s, tokens.refresh_token)
        try:
            target = await relying_party.end_session_url(s, tokens.id_token) or target
        except IssuerUnavailable:
            pass  # signed out here; the provider's session ends at its own time
    resp = redirect(target)
    session.clear_session(resp, s)
    return resp


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    """Where the provider sends the browser after signing out."""
    return render(request, "signed_out.html", title="You have signed out", viewer=None)
