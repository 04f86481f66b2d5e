"""The ICS's OpenID provider as partner onboarding reaches it: dynamic client registration
(RFC 7591) at the discovery document's `registration_endpoint`, with the initial access token
the deployment was given (settings.registration_token_file()), and registration management
(RFC 7592): GET, PUT and DELETE on the client's `registration_client_uri` with its
registration access token.

The provider away (no answer, a 5xx) is a 503 with Retry-After: nothing was changed here.
A provider whose discovery document has no `registration_endpoint` (many enterprise
providers) registers clients by hand; the onboarding API then records them (`supported`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from shared import oidc
from shared.errors import Conflict, ValidationFailed
from shared.oidc import IssuerUnavailable
from shared.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Registered:
    """What the provider answered: the client's metadata, its secret (shown once, never kept),
    and the registration management URI and token."""

    client_id: str
    client_secret: str | None
    registration_client_uri: str
    registration_access_token: str
    metadata: dict[str, Any]


async def registration_endpoint(settings: Settings) -> str | None:
    """The provider's registration endpoint, or None when it has none (register by hand)."""
    found = (await oidc.metadata(settings)).get("registration_endpoint")
    return found if isinstance(found, str) and found else None


def _initial_access_token(settings: Settings) -> str:
    path = settings.registration_token_file()
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise IssuerUnavailable(
            "partner onboarding has no initial access token for the identity provider's "
            f"registration endpoint (expected in {path}); ask the operators",
            headers={"Retry-After": "60"},
        )
    return token


async def _call(
    method: str, url: str, token: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            res = await client.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"the identity provider could not be reached ({type(exc).__name__}); nothing was "
            "changed, try again shortly",
            headers={"Retry-After": "5"},
        ) from None
    if res.status_code >= 500:
        raise IssuerUnavailable(
            f"the identity provider answered {res.status_code}; nothing was changed, try again "
            "shortly",
            headers={"Retry-After": "5"},
        )
    return res


def _error(res: httpx.Response) -> str:
    try:
        body = res.json()
    except json.JSONDecodeError:
        return str(res.status_code)
    if not isinstance(body, dict):
        return str(res.status_code)
    return f"{body.get('error', res.status_code)}: {body.get('error_description', '')}".strip()


def _registered(body: Any, *, uri: str | None = None, token: str | None = None) -> Registered:
    if not isinstance(body, dict) or not isinstance(body.get("client_id"), str):
        raise IssuerUnavailable("the identity provider's registration answer has no client_id")
    uri = body.get("registration_client_uri") or uri
    token = body.get("registration_access_token") or token
    if not isinstance(uri, str) or not isinstance(token, str):
        raise IssuerUnavailable(
            "the identity provider gave no registration_client_uri or registration_access_token"
        )
    secret = body.get("client_secret")
    return Registered(
        client_id=body["client_id"],
        client_secret=secret if isinstance(secret, str) else None,
        registration_client_uri=uri,
        registration_access_token=token,
        metadata=body,
    )


async def register(settings: Settings, metadata: dict[str, Any]) -> Registered:
    """A new client at the provider (RFC 7591 section 3)."""
    endpoint = await registration_endpoint(settings)
    if endpoint is None:
        raise Conflict(
            "the identity provider has no dynamic client registration: register the client "
            "there by hand and record it here with its client_id"
        )
    res = await _call("POST", endpoint, _initial_access_token(settings), metadata)
    if res.status_code == 400:
        raise ValidationFailed(f"the identity provider refused the client: {_error(res)}")
    if res.status_code in (401, 403):
        raise IssuerUnavailable(
            f"the identity provider refused partner onboarding's initial access token "
            f"({_error(res)}); ask the operators",
            headers={"Retry-After": "60"},
        )
    if res.status_code != 201:
        raise IssuerUnavailable(
            f"the identity provider answered {res.status_code} to a registration"
        )
    return _registered(res.json())


async def update(
    settings: Settings, *, uri: str, token: str, client_id: str, metadata: dict[str, Any]
) -> Registered:
    """Replace the client's metadata (RFC 7592 section 2.2): the secret is kept unless the
    metadata raises waymark_secret_version, when the provider issues a new one."""
    res = await _call("PUT", uri, token, {"client_id": client_id, **metadata})
    if res.status_code in (401, 403, 404):
        raise Conflict(
            f"the identity provider no longer knows this client's registration ({_error(res)}); "
            "revoke it here and register a new one"
        )
    if res.status_code != 200:
        raise ValidationFailed(f"the identity provider refused the change: {_error(res)}")
    return _registered(res.json(), uri=uri, token=token)


async def delete(settings: Settings, *, uri: str, token: str) -> bool:
    """Delete the client at the provider (RFC 7592 section 2.3): its client credentials grant
    fails from now on. False when the provider had already forgotten it (the same end)."""
    res = await _call("DELETE", uri, token)
    if res.status_code == 204:
        return True
    if res.status_code in (401, 403, 404):
        # RFC 7592: a deleted client's registration access token is invalid too (401)
        logger.warning("the provider no longer knew a client being revoked: %s", _error(res))
        return False
    raise IssuerUnavailable(f"the identity provider answered {res.status_code} to a deletion")
