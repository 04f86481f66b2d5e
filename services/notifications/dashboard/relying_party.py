"""The dashboard as an OpenID Connect relying party of the deployment's issuer (settings.issuer:
the ICS's provider, locally the stack's own, devtools/idp).

- Sign-in is the authorization code flow with PKCE (S256), `state` and `nonce`, asking for the
  resource `urn:waymark:api` (RFC 8707), whose access tokens the APIs accept. What the callback
  must check (state, nonce, the PKCE verifier, where to go next) travels in a short-lived cookie
  sealed with AES-GCM under a key derived from the client's secret, so any replica can open it
  and nobody else can read or forge it.
- The callback exchanges the code (client_secret_basic and the verifier) and validates the ID
  token with PyJWT against the issuer's JWKS (shared.oidc): signature, `iss`, `aud` = the
  client, `exp`, `iat`, the `nonce` sent, `azp`. The access token is verified exactly as the
  APIs verify it (shared.auth.verify_token) by the caller.
- Refresh (RFC 6749 section 6): a refresh token the provider rotates replaces the old one; a
  refused refresh is `RefreshRefused` (the session ends). Sign-out revokes the refresh token
  (RFC 7009) and sends the browser to the provider's end_session_endpoint (OpenID Connect
  RP-Initiated Logout 1.0) with `id_token_hint` and `post_logout_redirect_uri`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import oidc
from shared.errors import Unauthenticated, WaymarkError
from shared.settings import Settings

logger = logging.getLogger(__name__)

#: the local provider's client for the dashboard (devtools/stack/idp.py registers it)
LOCAL_CLIENT_ID = "waymark-dashboard"
#: the resource indicator (RFC 8707) Waymark's APIs are to the provider
RESOURCE = "urn:waymark:api"
SCOPE = "openid profile offline_access waymark"
CALLBACK_PATH = "/dashboard/auth/callback"
SIGNED_OUT_PATH = "/dashboard/signed-out"
#: how long a sign-in may take between leaving for the provider and coming back
LOGIN_STATE_SECONDS = 600
#: an access token this close to its expiry is refreshed on the next request
REFRESH_MARGIN_SECONDS = 60


class SignInFailed(WaymarkError):
    status, title, slug = 400, "Sign-in did not complete", "sign-in-failed"


class RefreshRefused(Exception):
    """The provider would not refresh the session's tokens (revoked, expired, reused)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    base: str  # the dashboard's public origin, e.g. https://waymark.example.nhs.uk

    @property
    def redirect_uri(self) -> str:
        return self.base + CALLBACK_PATH

    @property
    def post_logout_redirect_uri(self) -> str:
        return self.base + SIGNED_OUT_PATH


def client(settings: Settings) -> Client:
    """The dashboard's client: the configured one, or locally `waymark-dashboard` with the
    secret the local provider's configuration generated."""
    client_id = settings.dashboard_client_id or LOCAL_CLIENT_ID
    path = settings.dashboard_client_secret_path or (settings.local_idp_dir / "secrets" / client_id)
    try:
        secret = path.read_text().strip()
    except OSError:
        raise oidc.IssuerUnavailable(
            "the dashboard's client secret cannot be read; sign-in is unavailable"
        ) from None
    base = settings.dashboard_public_url or (
        f"http://127.0.0.1:{settings.api_port('notifications')}"
    )
    return Client(client_id, secret, base.rstrip("/"))


# --- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """What a session holds from the provider (sealed in its row)."""

    access_token: str
    refresh_token: str
    id_token: str
    expires_at: float  # epoch seconds: when the access token expires

    def due(self, now: float) -> bool:
        return self.expires_at - now <= REFRESH_MARGIN_SECONDS

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Tokens | None:
        try:
            d = json.loads(text)
            return cls(
                str(d["access_token"]),
                str(d["refresh_token"]),
                str(d["id_token"]),
                float(d["expires_at"]),
            )
        except (ValueError, TypeError, KeyError):
            return None  # not a session this dashboard made


# --- the sign-in's state, sealed in a cookie ---------------------------------------------------


@dataclass(frozen=True)
class LoginState:
    state: str
    nonce: str
    verifier: str
    next: str
    started: float


def _state_key(c: Client) -> bytes:
    return hmac.new(c.secret.encode(), b"waymark-dashboard-login-state", hashlib.sha256).digest()


def seal_state(c: Client, login: LoginState) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_state_key(c)).encrypt(nonce, json.dumps(asdict(login)).encode(), b"login")
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def open_state(c: Client, value: str, now: float) -> LoginState | None:
    """The sign-in's state from its cookie; None if it is not ours, altered or too old."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        plain = AESGCM(_state_key(c)).decrypt(raw[:12], raw[12:], b"login")
        login = LoginState(**json.loads(plain))
    except (InvalidTag, ValueError, TypeError):
        return None
    if not 0 <= now - login.started <= LOGIN_STATE_SECONDS:
        return None
    return login


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def begin(settings: Settings, *, next_url: str, force_login: bool) -> tuple[str, str]:
    """Where to send the browser to sign in, and the sealed state for its cookie.
    `force_login` asks the provider to authenticate the person again (prompt=login) rather than
    reuse its own session: after the dashboard's session timed out."""
    meta = await oidc.metadata(settings)
    c = client(settings)
    login = LoginState(
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=secrets.token_urlsafe(48),
        next=next_url,
        started=time.time(),
    )
    query = {
        "client_id": c.client_id,
        "response_type": "code",
        "redirect_uri": c.redirect_uri,
        "scope": SCOPE,
        "state": login.state,
        "nonce": login.nonce,
        "code_challenge": _challenge(login.verifier),
        "code_challenge_method": "S256",
        "resource": RESOURCE,
    }
    if force_login:
        query["prompt"] = "login"
    return f"{meta['authorization_endpoint']}?{urlencode(query)}", seal_state(c, login)


# --- the token endpoint -------------------------------------------------------------------------


async def _token_request(settings: Settings, form: dict[str, str]) -> dict[str, Any]:
    """A token endpoint answer; IssuerUnavailable if unreachable, else the JSON (status in
    `_status`)."""
    meta = await oidc.metadata(settings)
    c = client(settings)
    try:
        async with httpx.AsyncClient(timeout=oidc.FETCH_TIMEOUT_SECONDS) as http:
            res = await http.post(meta["token_endpoint"], data=form, auth=(c.client_id, c.secret))
    except httpx.HTTPError as exc:
        raise oidc.IssuerUnavailable(
            f"the identity provider's token endpoint could not be reached ({type(exc).__name__})",
            headers={"Retry-After": "5"},
        ) from None
    if res.status_code >= 500:
        raise oidc.IssuerUnavailable(
            f"the identity provider's token endpoint answered {res.status_code}",
            headers={"Retry-After": "5"},
        )
    try:
        body = res.json()
    except json.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    body["_status"] = res.status_code
    return body


def _refusal(body: dict[str, Any]) -> str:
    return f"{body.get('error', body['_status'])} {body.get('error_description', '')}".strip()


def _tokens(body: dict[str, Any], previous: Tokens | None = None) -> Tokens:
    access, kind = body.get("access_token"), str(body.get("token_type", "")).lower()
    if not isinstance(access, str) or kind not in ("bearer", "dpop"):
        raise SignInFailed("the identity provider answered without an access token")
    refresh = body.get("refresh_token") or (previous.refresh_token if previous else "")
    id_token = body.get("id_token") or (previous.id_token if previous else "")
    if not refresh or not id_token:
        raise SignInFailed(
            "the identity provider gave no refresh token or ID token: the dashboard's client "
            f"must be allowed the refresh_token grant and the scopes {SCOPE}"
        )
    try:
        lifetime = int(body.get("expires_in", 300))
    except (TypeError, ValueError):
        lifetime = 300
    return Tokens(access, str(refresh), str(id_token), time.time() + lifetime)


async def validate_id_token(
    settings: Settings, id_token: str, *, nonce: str | None, subject: str | None = None
) -> dict[str, Any]:
    """The ID token's claims (OpenID Connect Core 3.1.3.7), or SignInFailed saying why not.
    `nonce`: the one the sign-in sent (None on a refresh, which carries none); `subject`: the
    session's person (a refreshed ID token must name the same one)."""
    client_id = client(settings).client_id
    try:
        header = jwt.get_unverified_header(id_token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in oidc.ALGORITHMS or not isinstance(kid, str):
            raise SignInFailed(f"the ID token's algorithm {alg!r} or key id is not accepted")
        key = await oidc.signing_key(settings, kid)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=[alg],
            audience=client_id,
            issuer=settings.issuer,
            leeway=settings.oidc_clock_skew_seconds,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise SignInFailed(f"the ID token is not valid: {exc}") from None
    except Unauthenticated as exc:
        raise SignInFailed(f"the ID token is not valid: {exc.message}") from None
    aud = claims["aud"]
    azp = claims.get("azp")
    if (isinstance(aud, list) and len(aud) > 1 or azp is not None) and azp != client_id:
        raise SignInFailed("the ID token was issued to another client (azp)")
    if nonce is not None and not hmac.compare_digest(
        str(claims.get("nonce", "")).encode(), nonce.encode()
    ):
        raise SignInFailed("the ID token does not carry this sign-in's nonce")
    if subject is not None and claims["sub"] != subject:
        raise SignInFailed("the refreshed ID token names another person")
    return claims


async def exchange(settings: Settings, code: str, login: LoginState) -> tuple[Tokens, str]:
    """The code exchanged for tokens (with the PKCE verifier), the ID token validated; the
    tokens and the ID token's subject."""
    body = await _token_request(
        settings,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client(settings).redirect_uri,
            "code_verifier": login.verifier,
            "resource": RESOURCE,
        },
    )
    if body["_status"] != 200:
        raise SignInFailed(f"the identity provider refused the sign-in: {_refusal(body)}")
    tokens = _tokens(body)
    claims = await validate_id_token(settings, tokens.id_token, nonce=login.nonce)
    return tokens, str(claims["sub"])


async def refresh(settings: Settings, tokens: Tokens) -> Tokens:
    """New tokens for a session (the refresh token rotated if the provider rotates it); a new
    ID token must name the person the sign-in's did."""
    body = await _token_request(
        settings,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "resource": RESOURCE,
        },
    )
    if body["_status"] != 200:
        raise RefreshRefused(_refusal(body))
    try:
        fresh = _tokens(body, tokens)
        if body.get("id_token"):
            # the sign-in's ID token was validated when the session began
            first = jwt.decode(tokens.id_token, options={"verify_signature": False})
            await validate_id_token(settings, fresh.id_token, nonce=None, subject=first["sub"])
    except SignInFailed as exc:
        raise RefreshRefused(exc.message) from None
    except (jwt.PyJWTError, KeyError):
        raise RefreshRefused("the session's ID token cannot be read") from None
    return fresh


async def revoke(settings: Settings, refresh_token: str) -> bool:
    """Revoke a refresh token (RFC 7009); False if the provider could not be told (logged:
    the session is gone anyway, and the token expires at its own time)."""
    try:
        meta = await oidc.metadata(settings)
        endpoint = meta.get("revocation_endpoint")
        if not isinstance(endpoint, str):
            return False
        c = client(settings)
        async with httpx.AsyncClient(timeout=oidc.FETCH_TIMEOUT_SECONDS) as http:
            res = await http.post(
                endpoint,
                data={"token": refresh_token, "token_type_hint": "refresh_token"},
                auth=(c.client_id, c.secret),
            )
    except (httpx.HTTPError, oidc.IssuerUnavailable) as exc:
        logger.warning("dashboard sign-out: the refresh token was not revoked (%s)", exc)
        return False
    if res.status_code != 200:
        logger.warning("dashboard sign-out: revocation answered %s", res.status_code)
    return res.status_code == 200


async def end_session_url(settings: Settings, id_token: str) -> str | None:
    """The provider's end_session_endpoint for this person (RP-Initiated Logout), or None if
    the provider has none."""
    meta = await oidc.metadata(settings)
    endpoint = meta.get("end_session_endpoint")
    if not isinstance(endpoint, str):
        return None
    c = client(settings)
    query = {
        "id_token_hint": id_token,
        "post_logout_redirect_uri": c.post_logout_redirect_uri,
        "client_id": c.client_id,
    }
    return f"{endpoint}?{urlencode(query)}"
