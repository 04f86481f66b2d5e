"""Who is looking at the dashboard: the signed-in user's token, from an HttpOnly cookie (or an
Authorization header), verified exactly as the APIs verify it (shared.auth.verify_token); the
CSRF token every form carries, because a cookie authenticates; and the local dev sign-in.

- The session cookie holds the access token itself (HttpOnly, SameSite=Strict, Secure in
  production), so the dashboard keeps no session state and calls the other services' APIs with
  the user's own token. It expires with the token.
- CSRF: each form carries a token derived from the session token (SHA-256 with a fixed
  purpose prefix). A page of another origin can neither read the cookie nor the page, so it
  cannot know it; SameSite=Strict is a second wall. Every POST needs it, also one carrying an
  Authorization header: behind a sign-in proxy that adds the header to every request, the
  header authenticates a forged form as well as a cookie would. (API clients use the API's
  own routes, which need no CSRF token.)
- Local mode (settings.deployment_mode == "local") offers demo users to sign in as; the login
  form itself is protected by a double-submit token (a random cookie and the same value in the
  form). In production the dev sign-in does not exist (404): sign-in is the ICS's identity
  provider (OpenID Connect), which is not built yet.

The live alert stream (`/alerts/stream`, api_alerts.py) accepts this cookie too, through
`cookie_token`, so a browser's EventSource authenticates without a token in the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from fastapi import Request, Response

from shared.auth import Principal, Role, mint_token, verify_token
from shared.errors import Forbidden, Unauthenticated, ValidationFailed, WaymarkError
from shared.settings import Settings, get_settings

COOKIE = "waymark_session"
LOGIN_COOKIE = "waymark_login"
FLASH_COOKIE = "waymark_flash"
SESSION_TTL = timedelta(hours=8)
#: the largest form a dashboard page posts (a few short fields)
MAX_FORM_BYTES = 16 * 1024


class LoginRequired(Exception):
    """No valid session: the page sends the browser to sign in (local) or explains (production)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadTooLarge(WaymarkError):
    status, title, slug = 413, "Form too large", "payload-too-large"


@dataclass(frozen=True)
class DemoUser:
    key: str
    name: str
    roles: tuple[str, ...]
    org: str
    ics: str
    sees: str  # what this user's dashboard shows, for the sign-in page

    @property
    def sub(self) -> str:
        return self.key  # the button's value is the user id the token carries

    @property
    def label(self) -> str:
        return f"Sign in as {self.name} ({', '.join(self.roles)}, {self.org})"


def demo_users(settings: Settings) -> list[DemoUser]:
    """The local stack's demo users (every one invented)."""
    ics = settings.ics
    return [
        DemoUser("demo-casey", "Casey Coordinator", ("coordinator",), ics, ics,
                 f"the alert inbox of {ics}: acts on alerts"),
        DemoUser("demo-jordan", "Jordan Coordinator", ("coordinator",), ics, ics,
                 f"the alert inbox of {ics}: a second coordinator to assign alerts to"),
        DemoUser("demo-lee", "Lee Lead", ("admin",), ics, ics,
                 f"the overview of {ics}: loops, stalls and waits (reads alerts, does not act)"),
        DemoUser("demo-gita", "Dr Gita Rao", ("clinician",), "GP-A81001", ics,
                 "a GP practice's referrals and the directory of services"),
        DemoUser("demo-sam", "Sam Triage", ("service_staff",), "PAIN-RTH", ics,
                 "the pain service's triage worklist"),
    ]


def demo_user(settings: Settings, key: str) -> DemoUser | None:
    return next((u for u in demo_users(settings) if u.key == key), None)


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

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)

    @property
    def name(self) -> str:
        return self.principal.name or self.principal.user

    def has(self, *roles: Role) -> bool:
        return self.principal.has(*roles)


def csrf_for(token: str) -> str:
    digest = hashlib.sha256(b"waymark-dashboard-csrf\x00" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cookie_token(request: Request) -> str | None:
    """The session cookie's token, if the request carries one (not yet verified)."""
    value = request.cookies.get(COOKIE)
    return value.strip() if value and value.strip() else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LoginRequired("the Authorization header must be: Bearer <token>")
    return token.strip()


def viewer(request: Request) -> Viewer:
    """The page's user (a FastAPI dependency); LoginRequired when there is none."""
    token = _bearer(request)
    via_cookie = token is None
    if token is None:
        token = cookie_token(request)
    if token is None:
        raise LoginRequired("sign in to use the dashboard")
    try:
        principal = verify_token(get_settings(), token)
    except Unauthenticated as exc:
        raise LoginRequired(exc.message) from None
    request.state.principal = principal
    return Viewer(principal, token, via_cookie)


def set_session(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=not local_mode(settings))


def clear_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=not local_mode(settings))


def mint_session(settings: Settings, user: DemoUser) -> str:
    return mint_token(settings, sub=user.sub, roles=list(user.roles), org=user.org,
                      ics=user.ics, name=user.name, ttl=SESSION_TTL)


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
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("the form could not be read") from None
    return {k: v[0] for k, v in fields.items() if v}


def check_csrf(v: Viewer, form: dict[str, str]) -> None:
    """A POST must carry the CSRF token of the page it came from."""
    sent = form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent.encode(), v.csrf.encode()):
        raise Forbidden("this form has expired or did not come from the dashboard; reload the "
                        "page and try again", reason="csrf")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get("csrf", "")
    return bool(cookie) and bool(sent) and hmac.compare_digest(cookie.encode(), sent.encode())


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
    rest = parts.path[len("/dashboard"):]
    if rest and not rest.startswith("/"):
        return None  # /dashboardX is not a dashboard page
    return value


def home_for(principal: Principal) -> str:
    """Where a user lands: coordinators their inbox, ICS leads the overview, service staff
    their worklist, everyone else the directory."""
    if principal.has(Role.COORDINATOR):
        return "/dashboard/alerts"
    if principal.has(Role.ADMIN):
        return "/dashboard/overview"
    if principal.has(Role.SERVICE_STAFF):
        return "/dashboard/worklist"
    return "/dashboard/directory"
