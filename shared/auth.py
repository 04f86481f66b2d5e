"""Bearer-token authentication and role/organisation authorisation for every endpoint.

Access tokens are JWTs (RFC 9068) from the deployment's OpenID issuer (`Settings.issuer`: the
ICS's provider, e.g. NHS CIS2 or Entra ID; locally the stack's own provider, devtools/idp).
Every service verifies them against the keys the issuer publishes (shared.oidc: discovery, JWKS
by `kid`, refetched on an unknown `kid`), and checks `iss`, `aud`, `exp`, `nbf`, `iat` with the
configured clock skew, and `azp`/`client_id`. The claims become Waymark's roles, organisation
and ICS through the configured claim mapping (shared.claim_mapping).

People's tokens come from the authorization code flow (the dashboard); systems' tokens from
client credentials: partner systems, EHR source systems and Waymark's own processes, each a
client of its own with scopes (`Principal.scopes`).

Locally, `mint_token` signs a token with the local provider's current key (the tests' and
`waymark token --mint`'s shortcut); it refuses when the issuer is not the local provider.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, Request
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm

from shared import oidc
from shared.access import PROCESS_SCOPES, Principal, Role
from shared.claim_mapping import ClaimsRefused, load_mapping, map_claims
from shared.errors import Forbidden, Unauthenticated
from shared.identifiers import ORG_CODE
from shared.settings import Settings, get_settings

__all__ = [
    "Principal",
    "Role",
    "CurrentPrincipal",
    "current_principal",
    "verify_token",
    "mint_token",
    "require_roles",
    "service_token",
    "ensure_keys",
    "rotate_local_keys",
    "write_private_file",
    "ORG_CODE",
]


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a secret (a key) readable by its owner only; `exclusive` refuses to replace one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --- the local provider's signing keys ----------------------------------------------------------


def _keys_file(settings: Settings) -> Path:
    return settings.local_idp_dir / "jwks.json"


def _new_key() -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    assert isinstance(jwk, dict)
    return {**jwk, "kid": f"wm-{uuid.uuid4().hex[:12]}", "use": "sig", "alg": "ES256"}


def ensure_keys(settings: Settings) -> None:
    """The local provider's private JWKS, made once (owner-only). The first key signs."""
    path = _keys_file(settings)
    if path.exists():
        return
    write_private_file(path, json.dumps({"keys": [_new_key()]}).encode())


def rotate_local_keys(settings: Settings, *, keep: int = 2) -> str:
    """A new signing key first; the newest `keep` older keys stay published, so tokens they
    signed verify until they expire. Returns the new key id. The provider reads its keys when
    it starts (`waymark idp rotate-keys` restarts it)."""
    ensure_keys(settings)
    path = _keys_file(settings)
    keys = json.loads(path.read_text())["keys"]
    new = _new_key()
    write_private_file(path, json.dumps({"keys": [new, *keys[:keep]]}).encode())
    return str(new["kid"])


def _local_signing_key(settings: Settings) -> tuple[str, Any]:
    if settings.deployment_mode != "local":
        raise RuntimeError(
            f"tokens come from the issuer {settings.issuer}; only the local provider's "
            "tokens can be minted (local mode)"
        )
    ensure_keys(settings)
    first = json.loads(_keys_file(settings).read_text())["keys"][0]
    return str(first["kid"]), ECAlgorithm.from_jwk(first)


def local_signing_kid(settings: Settings) -> str:
    """The `kid` the local provider signs with now (its own tokens and `mint_token`'s)."""
    return _local_signing_key(settings)[0]


def mint_token(
    settings: Settings,
    *,
    sub: str,
    roles: list[str],
    org: str,
    ics: str = "ICS-1",
    name: str = "",
    ttl: timedelta = timedelta(hours=8),
    client_id: str = "waymark-local-mint",
    scope: str | None = None,
) -> str:
    """A token as the local provider would sign it (local and tests only). With `scope` it is a
    system's token (client credentials: `sub` is the client), else a person's."""
    for r in roles:
        Role(r)  # unknown role -> ValueError
    kid, key = _local_signing_key(settings)
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.jwt_audience,
        "sub": sub,
        "client_id": client_id,
        "roles": roles,
        "org": org,
        "ics": ics,
        "name": name,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"})


# --- verification -------------------------------------------------------------------------------


def _header(token: str) -> tuple[str, str]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the access token is not valid: {exc}") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in oidc.ALGORITHMS:
        raise Unauthenticated(f"the access token's algorithm {alg!r} is not accepted")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("the access token names no signing key (kid)")
    return alg, kid


def principal_from_claims(settings: Settings, claims: dict[str, Any]) -> Principal:
    """The caller the (verified) claims describe, through the configured claim mapping."""
    aud = claims.get("aud")
    azp = claims.get("azp", claims.get("client_id"))
    if isinstance(aud, list) and len(aud) > 1 and not azp:
        raise Unauthenticated("a token for several audiences must name its client (azp)")
    if azp is not None and (not isinstance(azp, str) or not azp):
        raise Unauthenticated("the access token's azp/client_id must be a client id")
    try:
        mapped = map_claims(load_mapping(settings.oidc_claim_mapping), claims, settings.ics)
    except ClaimsRefused as exc:
        raise Unauthenticated(str(exc)) from None
    sub = str(claims["sub"])
    raw_scope = claims.get("scope")
    # a client credentials token is the client's own: its subject is the client id
    machine = azp is not None and sub == azp
    if machine and not isinstance(raw_scope, str):
        raise Unauthenticated("a system's access token must carry its scopes")
    return Principal(
        user=sub,
        roles=mapped.roles,
        org=mapped.org,
        ics=mapped.ics,
        name=mapped.name,
        issuer="",
        client_id=azp or "",
        scopes=frozenset(str(raw_scope).split()) if machine else None,
    )


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str
    key: PyJWK  # the key object that verified it: a refetched or rotated JWKS holds new ones
    exp: float  # the token's exp, in seconds since the epoch


#: tokens verified recently: (token, issuer, audience, claim mapping, ICS) -> what they
#: proved, oldest first
_verified: OrderedDict[tuple[str, ...], _Verified] = OrderedDict()


async def verify_token(settings: Settings, token: str) -> Principal:
    """The caller a bearer token proves, or Unauthenticated saying what is wrong with it.
    A token verified moments ago is taken from the cache while it is unexpired and its signing
    key is still the one the fresh JWKS holds (`oidc_verified_token_cache_size`)."""
    cache_key = (
        token,
        settings.issuer,
        settings.jwt_audience,
        settings.oidc_claim_mapping,
        settings.ics,
    )
    hit = _verified.get(cache_key)
    if (
        hit is not None
        and time.time() < hit.exp + settings.oidc_clock_skew_seconds
        and oidc.fresh_key(settings, hit.kid) is hit.key
    ):
        return hit.principal
    principal, kid, key, exp = await _verify(settings, token)
    if settings.oidc_verified_token_cache_size:
        _verified[cache_key] = _Verified(principal, kid, key, exp)
        while len(_verified) > settings.oidc_verified_token_cache_size:
            _verified.popitem(last=False)
    return principal


async def _verify(settings: Settings, token: str) -> tuple[Principal, str, PyJWK, float]:
    alg, kid = _header(token)
    key = await oidc.signing_key(settings, kid)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience,
            issuer=settings.issuer,
            leeway=settings.oidc_clock_skew_seconds,
            options={"require": ["exp", "sub", "iss", "aud", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("the access token is not valid yet (nbf/iat)") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("the access token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("the access token is from another issuer") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the access token is not valid: {exc}") from None
    return principal_from_claims(settings, claims), kid, key, float(claims["exp"])


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    return token.strip()


#: where a middleware that already verified this request's token (the write rate limit)
#: leaves (token, principal) in the request's scope state, so the route does not verify it again
VERIFIED_TOKEN = "waymark.verified_token"


def remember_verified(scope: MutableMapping[str, Any], token: str, principal: Principal) -> None:
    """Keep a token verified for this request (scope-local: it ends with the request)."""
    scope.setdefault("state", {})[VERIFIED_TOKEN] = (token, principal)


async def current_principal(request: Request) -> Principal:
    token = bearer(request)
    verified = request.scope.get("state", {}).get(VERIFIED_TOKEN)
    if verified is not None and verified[0] == token:
        principal: Principal = verified[1]
    else:
        principal = await verify_token(get_settings(), token)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role):  # type: ignore[no-untyped-def]
    """Dependency: the caller must hold at least one of `roles`."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(
                f"this action needs one of the roles: {', '.join(sorted(r.value for r in roles))}"
            )
        return principal

    return Depends(check)


# --- service credentials ------------------------------------------------------------------------


def process_client(settings: Settings, service: str) -> tuple[str, Path]:
    """A Waymark process's own OAuth client: the configured one, or locally `waymark-<service>`
    with the secret the local provider's configuration generated."""
    if settings.oauth_client_id:
        if settings.oauth_client_secret_path is None:
            raise RuntimeError("oauth_client_id is set without oauth_client_secret_path")
        return settings.oauth_client_id, settings.oauth_client_secret_path
    client_id = f"waymark-{service.replace('_', '-')}"
    return client_id, settings.local_idp_dir / "secrets" / client_id


async def service_token(settings: Settings, service: str) -> str:
    """The bearer token a Waymark process calls another service's API with: its own client's
    client credentials token from the issuer (cached until a minute before it expires; the
    secret file is re-read on every fetch, so rotating it needs no restart)."""
    client_id, secret_path = process_client(settings, service)
    try:
        secret = secret_path.read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"no client secret for {client_id} at {secret_path}: {exc}") from None
    scope = " ".join(c.value for c in PROCESS_SCOPES.get(service, ()))
    return await oidc.cached_client_token(settings, client_id, secret, scope)
