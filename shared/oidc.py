"""The OpenID issuer, as an API and a Waymark process see it: its discovery document, its
signing keys (JWKS) and its token endpoint.

- Discovery: `<issuer>/.well-known/openid-configuration`, whose `issuer` must be the configured
  one exactly (OpenID Connect Discovery 1.0, section 4.3).
- Keys: the `jwks_uri` document, parsed by PyJWT (`PyJWKSet`), cached for
  `oidc_jwks_max_age_seconds`. A token naming a `kid` the cache does not hold makes one fetch
  again (at most every `oidc_jwks_min_refresh_seconds`, so a stream of forged kids cannot turn
  into a stream of fetches): a key the provider rotated in is taken without a restart, and the
  keys it still publishes keep verifying the tokens they signed.
- Client credentials (RFC 6749 section 4.4): a Waymark process's own token for calling another
  service's API, kept until a minute before it expires.

The issuer unreachable is a 503 with Retry-After, never a 401: the caller's token may be fine.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from shared.errors import Unauthenticated, WaymarkError
from shared.settings import Settings

#: signature algorithms a token may use (asymmetric only: a shared secret would let every API
#: mint tokens); NHS CIS2 signs with RS512, the local provider with ES256
ALGORITHMS = ("ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
#: how long a fetch from the issuer may take
FETCH_TIMEOUT_SECONDS = 5.0


class IssuerUnavailable(WaymarkError):
    status, title, slug = 503, "Identity provider unavailable", "issuer-unavailable"


@dataclass
class _IssuerState:
    metadata: dict[str, Any] | None = None
    keys: dict[str, PyJWK] = field(default_factory=dict)
    fetched_at: float = float("-inf")  # monotonic time of the last JWKS fetch
    lock: asyncio.Lock | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def guard(self) -> asyncio.Lock:
        # one lock per event loop (test sessions and CLIs run several loops in one process)
        loop = asyncio.get_running_loop()
        if self.lock is None or self.loop is not loop:
            self.lock, self.loop = asyncio.Lock(), loop
        return self.lock


_issuers: dict[str, _IssuerState] = {}


def _state(issuer: str) -> _IssuerState:
    return _issuers.setdefault(issuer, _IssuerState())


async def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
            res = await client.get(url, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"the identity provider's {what} could not be fetched ({type(exc).__name__}); "
            "try again shortly",
            headers={"Retry-After": "5"},
        ) from None
    if res.status_code != 200:
        raise IssuerUnavailable(
            f"the identity provider's {what} answered {res.status_code}",
            headers={"Retry-After": "5"},
        )
    try:
        body = res.json()
    except json.JSONDecodeError:
        raise IssuerUnavailable(f"the identity provider's {what} is not JSON") from None
    if not isinstance(body, dict):
        raise IssuerUnavailable(f"the identity provider's {what} is not a JSON object")
    return body


async def metadata(settings: Settings) -> dict[str, Any]:
    """The issuer's discovery document (fetched once per process and issuer)."""
    issuer = settings.issuer
    state = _state(issuer)
    if state.metadata is not None:
        return state.metadata
    async with state.guard():
        if state.metadata is None:
            doc = await _get_json(f"{issuer}/.well-known/openid-configuration", "discovery")
            if str(doc.get("issuer", "")).rstrip("/") != issuer:
                raise IssuerUnavailable(
                    f"the discovery document names issuer {doc.get('issuer')!r}, not {issuer!r}"
                )
            if not isinstance(doc.get("jwks_uri"), str):
                raise IssuerUnavailable("the discovery document has no jwks_uri")
            state.metadata = doc
    return state.metadata


def _parse_keys(doc: dict[str, Any]) -> dict[str, PyJWK]:
    try:
        found = PyJWKSet.from_dict(doc)
    except jwt.PyJWKSetError as exc:
        raise IssuerUnavailable(f"the identity provider's JWKS is not usable: {exc}") from None
    return {k.key_id: k for k in found.keys if k.key_id and k.public_key_use in (None, "sig")}


async def signing_key(settings: Settings, kid: str) -> PyJWK:
    """The issuer's public key with this `kid`, fetching the JWKS again when it is unknown (a
    rotation) or the cache has aged out."""
    state = _state(settings.issuer)
    now = time.monotonic()
    fresh = now - state.fetched_at < settings.oidc_jwks_max_age_seconds
    if fresh and kid in state.keys:
        return state.keys[kid]
    meta = await metadata(settings)  # before the lock: it takes the lock itself
    async with state.guard():
        now = time.monotonic()
        stale = now - state.fetched_at >= settings.oidc_jwks_max_age_seconds
        may_refetch = now - state.fetched_at >= settings.oidc_jwks_min_refresh_seconds
        if (stale or kid not in state.keys) and may_refetch:
            try:
                state.keys = _parse_keys(await _get_json(meta["jwks_uri"], "JWKS"))
            except IssuerUnavailable:
                if kid not in state.keys:
                    raise
                # the issuer is briefly away: a key it published before still verifies
            state.fetched_at = time.monotonic()
    if kid not in state.keys:
        raise Unauthenticated(f"the access token's signing key {kid!r} is not the issuer's")
    return state.keys[kid]


def fresh_key(settings: Settings, kid: str) -> PyJWK | None:
    """The key with this `kid` if the cached JWKS holds it and is fresh, without fetching."""
    state = _issuers.get(settings.issuer)
    if state is None or time.monotonic() - state.fetched_at >= settings.oidc_jwks_max_age_seconds:
        return None
    return state.keys.get(kid)


def forget(settings: Settings) -> None:
    """Drop what is cached about the issuer (tests; a changed configuration)."""
    _issuers.pop(settings.issuer, None)


# --- client credentials -----------------------------------------------------------------------

_client_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}


async def client_credentials(
    settings: Settings, client_id: str, secret: str, scope: str = ""
) -> tuple[str, int]:
    """A fresh access token for a client (RFC 6749 section 4.4, client_secret_basic) and its
    lifetime in seconds. Refusals (a revoked client, a scope it does not have) raise
    Unauthenticated with the provider's `error`."""
    meta = await metadata(settings)
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
            res = await client.post(meta["token_endpoint"], data=form, auth=(client_id, secret))
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"the identity provider's token endpoint could not be reached ({type(exc).__name__})",
            headers={"Retry-After": "5"},
        ) from None
    try:
        body = res.json()
    except json.JSONDecodeError:
        body = {}
    if res.status_code != 200 or "access_token" not in body:
        raise Unauthenticated(
            f"the identity provider refused client {client_id}: "
            f"{body.get('error', res.status_code)} {body.get('error_description', '')}".strip()
        )
    return str(body["access_token"]), int(body.get("expires_in", 300))


async def cached_client_token(
    settings: Settings, client_id: str, secret: str, scope: str = ""
) -> str:
    """`client_credentials`, reused until a minute before it expires."""
    key = (settings.issuer, client_id, scope)
    found = _client_tokens.get(key)
    now = time.time()
    if found is not None and found[1] - now > 60:
        return found[0]
    token, ttl = await client_credentials(settings, client_id, secret, scope)
    _client_tokens[key] = (token, now + ttl)
    return token
