"""Who is looking at the dashboard: a server-side session found by the cookie's random id (or
an Authorization header), the user's access token verified exactly as the APIs verify it
(shared.auth.verify_token); and the CSRF token every form carries, because a cookie
authenticates. Signing in is the issuer's (relying_party.py, pages/signin.py).

- The session cookie (HttpOnly, SameSite=Strict, Secure in production) holds a random id and
  nothing else: it is no bearer token, so no API accepts it. The session is a row of the
  notifications schema (`dashboard_session`) found by a hash of that id; it holds the tokens
  the provider gave (access, refresh and ID token), sealed (AES-GCM) with a key derived from the
  id, so the dashboard calls the other services' APIs as the user while a copy of the table
  opens nothing.
- Refresh: a request that finds the access token within a minute of its expiry refreshes it
  with the refresh token, the row locked meanwhile (FOR UPDATE), so two requests at once
  refresh once and a rotated refresh token is never used twice. A refused refresh ends the
  session (the next page is sign-in).
- A session ends when the user signs out (the row is deleted: the cookie is dead wherever a
  copy of it is), after `dashboard_session_idle_seconds` without a request (idle timeout), or
  `dashboard_session_max_seconds` after sign-in (absolute timeout), or when its refresh is
  refused. An ended session is a sign-in page, like none at all.
- CSRF: each form carries a token derived from the session id (SHA-256 with a fixed purpose
  prefix; from the bearer token when an Authorization header authenticates). A page of
  another origin can neither read the cookie nor the page, so it cannot know it;
  SameSite=Strict is a second wall. Every POST needs it, also one carrying an Authorization
  header: behind a sign-in proxy that adds the header to every request, the header
  authenticates a forged form as well as a cookie would. (API clients use the API's own
  routes, which need no CSRF token.)

The live alert stream (`/alerts/stream`, api_alerts.py) accepts this cookie too
(`stream_session`), so a browser's EventSource authenticates without a token in the URL; the
stream ends when its session does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Request, Response
from sqlalchemy import Table, delete, or_, select, update

from services.notifications.dashboard import relying_party
from services.notifications.dashboard.relying_party import Tokens
from services.notifications.models import DashboardSession
from shared.auth import Principal, Role, verify_token
from shared.db import unit_of_work
from shared.errors import Forbidden, Unauthenticated, ValidationFailed, WaymarkError
from shared.oidc import IssuerUnavailable
from shared.settings import Settings, get_settings

COOKIE = "waymark_session"
LOGIN_COOKIE = "waymark_login"  # the sign-in in progress (relying_party.LoginState)
FLASH_COOKIE = "waymark_flash"
#: what a session's random id is made of: 256 bits, URL-safe base64
SESSION_ID_BYTES = 32
logger = logging.getLogger(__name__)
SESSIONS = cast(Table, DashboardSession.__table__)  # type: ignore[attr-defined]
#: the largest form a dashboard page posts (a few short fields)
MAX_FORM_BYTES = 16 * 1024


class LoginRequired(Exception):
    """No valid session: the page sends the browser to sign in (a 401 for the script)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadTooLarge(WaymarkError):
    status, title, slug = 413, "Form too large", "payload-too-large"


def local_mode(settings: Settings) -> bool:
    return settings.deployment_mode == "local"


# --- the session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page: who, their token (to call the APIs as them), and whether
    the cookie authenticated them (then the page offers to sign out)."""

    principal: Principal
    token: str
    via_cookie: bool
    session_id: str | None = None  # the cookie's session id, when the cookie authenticated

    @property
    def csrf(self) -> str:
        return csrf_for(self.session_id or self.token)

    @property
    def name(self) -> str:
        return self.principal.name or self.principal.user

    def has(self, *roles: Role) -> bool:
        return self.principal.has(*roles)


def csrf_for(secret: str) -> str:
    """The CSRF token of a session id (or of a bearer token, for a header-authenticated page)."""
    digest = hashlib.sha256(b"waymark-dashboard-csrf\x00" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cookie_session_id(request: Request) -> str | None:
    """The session cookie's id, if the request carries one (not yet looked up)."""
    value = request.cookies.get(COOKIE)
    return value.strip() if value and value.strip() else None


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(b"waymark-dashboard-session\x00" + session_id.encode()).hexdigest()


def _seal_key(session_id: str) -> bytes:
    # a key only the cookie's holder can make: the row alone does not open the token
    return hmac.new(
        session_id.encode(), b"waymark-dashboard-session-token", hashlib.sha256
    ).digest()


def _seal(session_id: str, token: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_seal_key(session_id)).encrypt(
        nonce, token.encode(), _id_hash(session_id).encode()
    )


def _unseal(session_id: str, sealed: bytes) -> str | None:
    try:
        return (
            AESGCM(_seal_key(session_id))
            .decrypt(sealed[:12], sealed[12:], _id_hash(session_id).encode())
            .decode()
        )
    except (InvalidTag, ValueError):
        return None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LoginRequired("the Authorization header must be: Bearer <token>")
    return token.strip()


#: what a page says when the cookie names no live session
SESSION_ENDED = (
    "your dashboard session has ended (signed out, timed out or not valid); sign in again"
)


def _live(s: Settings, session_id: str, now: datetime) -> Any:
    c = SESSIONS.c
    idle_since = now - timedelta(seconds=s.dashboard_session_idle_seconds)
    return (
        (c.id_hash == _id_hash(session_id)) & (c.expires_at > now) & (c.last_seen_at > idle_since)
    )


def _tokens(session_id: str, sealed: bytes | None) -> Tokens | None:
    opened = _unseal(session_id, sealed) if sealed is not None else None
    return Tokens.from_json(opened) if opened is not None else None


async def _live_tokens(request: Request, session_id: str, *, touch: bool) -> Tokens | None:
    """The tokens of a live session (touched, so its idle timeout starts again, and refreshed
    when due, if `touch`); None if the session has ended or never was."""
    if len(session_id) > 100:
        return None  # not an id this dashboard made (an old token cookie, say): no query
    s: Settings = request.app.state.settings
    now = datetime.now(UTC)
    live = _live(s, session_id, now)
    async with unit_of_work(request.app.state.sessions) as db:
        if touch:
            found = await db.exec(
                update(SESSIONS)
                .where(live)
                .values(last_seen_at=now)
                .returning(SESSIONS.c.token_sealed)
            )
        else:
            found = await db.exec(select(SESSIONS.c.token_sealed).where(live))  # type: ignore[call-overload]
        tokens = _tokens(session_id, found.scalar_one_or_none())
    if tokens is None or not touch or not tokens.due(time.time()):
        return tokens
    return await _refreshed(request, session_id)


async def _refreshed(request: Request, session_id: str) -> Tokens | None:
    """The session's tokens refreshed, the row locked meanwhile: a second request waiting on
    the lock finds them fresh and does not use the (maybe rotated) refresh token again. A
    refused refresh ends the session; the provider unreachable keeps a token still valid."""
    s: Settings = request.app.state.settings
    now = datetime.now(UTC)
    async with unit_of_work(request.app.state.sessions) as db:
        found = await db.exec(
            select(SESSIONS.c.token_sealed)  # type: ignore[call-overload]
            .where(_live(s, session_id, now))
            .with_for_update()
        )
        tokens = _tokens(session_id, found.scalar_one_or_none())
        if tokens is None or not tokens.due(time.time()):
            return tokens
        try:
            fresh = await relying_party.refresh(s, tokens)
        except relying_party.RefreshRefused as exc:
            logger.info("dashboard session ended: its refresh was refused (%s)", exc)
            await db.exec(delete(SESSIONS).where(SESSIONS.c.id_hash == _id_hash(session_id)))
            return None
        except IssuerUnavailable:
            if tokens.expires_at > time.time():
                return tokens  # still valid: the next request tries again
            raise
        await db.exec(
            update(SESSIONS)
            .where(SESSIONS.c.id_hash == _id_hash(session_id))
            .values(token_sealed=_seal(session_id, fresh.to_json()))
        )
    return fresh


async def load_session(request: Request) -> None:
    """The dashboard router's dependency: the page's user, worked out once per request. The
    Authorization header, or else the cookie's session (looked up and touched), and its token
    verified exactly as the APIs verify it; `viewer` then answers without I/O."""
    try:
        token = _bearer(request)
    except LoginRequired as exc:
        request.state.login_problem = exc.reason
        return
    session_id = None
    if token is None:
        session_id = cookie_session_id(request)
        if session_id is None:
            return
        tokens = await _live_tokens(request, session_id, touch=True)
        if tokens is None:
            return
        token = tokens.access_token
    try:
        principal = await verify_token(get_settings(), token)
    except Unauthenticated as exc:
        request.state.login_problem = exc.message
        return
    request.state.principal = principal
    request.state.dashboard_viewer = Viewer(principal, token, session_id is not None, session_id)


def viewer(request: Request) -> Viewer:
    """The page's user (a FastAPI dependency); LoginRequired when there is none."""
    found: Viewer | None = getattr(request.state, "dashboard_viewer", None)
    if found is not None:
        return found
    problem = getattr(request.state, "login_problem", None)
    if problem:
        raise LoginRequired(problem)
    raise LoginRequired(
        SESSION_ENDED if cookie_session_id(request) else "sign in to use the dashboard"
    )


async def stream_session(request: Request) -> tuple[str, str] | None:
    """For the live stream: the cookie's (session id, token), or None without a live one."""
    session_id = cookie_session_id(request)
    if session_id is None:
        return None
    tokens = await _live_tokens(request, session_id, touch=True)
    return (session_id, tokens.access_token) if tokens is not None else None


async def session_alive(request: Request, session_id: str) -> bool:
    """Whether a session is still live (not touched: an open stream is not activity)."""
    return await _live_tokens(request, session_id, touch=False) is not None


async def start_session(
    request: Request, response: Response, settings: Settings, tokens: Tokens, principal: Principal
) -> None:
    """A new session for a signed-in user: a row holding the sealed tokens, and the cookie
    carrying its random id. Sessions that have ended are cleared away here."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    now = datetime.now(UTC)
    max_age = settings.dashboard_session_max_seconds
    idle_since = now - timedelta(seconds=settings.dashboard_session_idle_seconds)
    async with unit_of_work(request.app.state.sessions) as db:
        await db.exec(
            delete(SESSIONS).where(
                or_(SESSIONS.c.expires_at <= now, SESSIONS.c.last_seen_at <= idle_since)
            )
        )
        db.add(
            DashboardSession(
                id_hash=_id_hash(session_id),
                user_identity=principal.identity,
                token_sealed=_seal(session_id, tokens.to_json()),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=max_age),
            )
        )
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=not local_mode(settings),
    )


async def end_session(request: Request) -> Tokens | None:
    """Sign out: the cookie's session is deleted, so the cookie is dead wherever it is; the
    tokens it held (to revoke and to name the person to the provider), if any."""
    session_id = cookie_session_id(request)
    if session_id is None:
        return None
    async with unit_of_work(request.app.state.sessions) as db:
        found = await db.exec(
            delete(SESSIONS)
            .where(SESSIONS.c.id_hash == _id_hash(session_id))
            .returning(SESSIONS.c.token_sealed)
        )
        return _tokens(session_id, found.scalar_one_or_none())


def clear_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=not local_mode(settings)
    )


# --- forms and CSRF -------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form (what the pages and the script post): the first value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge("the form is too large")
    if not body:
        return {}  # a POST with nothing to say (an API client acknowledging, say)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ValidationFailed("send the form as application/x-www-form-urlencoded")
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=50, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("the form could not be read") from None
    return {k: v[0] for k, v in fields.items() if v}


def check_csrf(v: Viewer, form: dict[str, str]) -> None:
    """A POST must carry the CSRF token of the page it came from."""
    sent = form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent.encode(), v.csrf.encode()):
        raise Forbidden(
            "this form has expired or did not come from the dashboard; reload the "
            "page and try again",
            reason="csrf",
        )


def safe_next(value: str | None) -> str | None:
    """A dashboard address to return to, or None: only this site's /dashboard pages (never
    another host, a scheme, or a protocol-relative //host)."""
    if not value or len(value) > 2000 or not value.startswith("/dashboard"):
        return None
    if any(ch in value for ch in "\\\r\n\t") or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return None
    rest = parts.path[len("/dashboard") :]
    if rest and not rest.startswith("/"):
        return None  # /dashboardX is not a dashboard page
    return value


def home_for(principal: Principal) -> str:
    """Where a user lands: coordinators their inbox, ICS leads the overview, service staff
    their worklist, everyone else the directory."""
    if principal.has(Role.COORDINATOR):
        return "/dashboard/alerts"
    if principal.has(Role.ICS_LEAD):
        return "/dashboard/overview"
    if principal.has(Role.SERVICE_STAFF):
        return "/dashboard/worklist"
    return "/dashboard/directory"


#: a page's signed-in user (LoginRequired, so sign-in, when there is none)
ViewerDep = Annotated[Viewer, Depends(viewer)]
