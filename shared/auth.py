"""Bearer-token authentication and role/organisation authorisation for every endpoint.

Tokens are JWTs signed with ES256. Every service verifies with the public key; locally
`waymark token` mints tokens with a private key generated under `<home>/keys` (never
committed). In an ICS deployment the tokens come from the identity provider and only the
public key is mounted.

Claims: `iss` + `sub` (the user), `roles` (one role table for every service:
`shared.access.ROLE_TABLE`),
`org` (the user's organisation code), `ics` (the integrated care system), `name`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, Request

from shared.access import Principal, Role

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
    "write_private_file",
    "ORG_CODE",
]
from shared.errors import Forbidden, Unauthenticated
from shared.identifiers import ORG_CODE
from shared.settings import Settings, get_settings

#: organisation codes as events carry them (ODS-style codes: letters, digits, '-')


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a secret (a key) readable by its owner only; `exclusive` refuses to replace one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_keys(settings: Settings) -> None:
    """Create the local signing key pair once (private key readable by its owner only)."""
    priv, pub = settings.private_key_path(), settings.public_key_path()
    if priv.exists() and pub.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_file(
        priv,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def mint_token(
    settings: Settings,
    *,
    sub: str,
    roles: list[str],
    org: str,
    ics: str = "ICS-1",
    name: str = "",
    ttl: timedelta = timedelta(hours=8),
) -> str:
    for r in roles:
        Role(r)  # unknown role -> ValueError
    ensure_keys(settings)
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": sub,
        "roles": roles,
        "org": org,
        "ics": ics,
        "name": name,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, settings.private_key_path().read_bytes(), algorithm="ES256")


@lru_cache(maxsize=4)
def _public_key(path: Path) -> bytes:
    return path.read_bytes()


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        key = _public_key(settings.public_key_path())
    except FileNotFoundError:
        raise Unauthenticated("this service has no token verification key configured") from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["ES256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the access token is not valid: {exc}") from None
    raw_roles = claims.get("roles")
    if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
        raise Unauthenticated("the access token's roles must be a list of role names")
    try:
        roles = frozenset(Role(r) for r in raw_roles)
    except ValueError as exc:
        raise Unauthenticated(f"the access token names an unknown role: {exc}") from None
    org = claims.get("org")
    if not roles or not isinstance(org, str) or not ORG_CODE.fullmatch(org):
        raise Unauthenticated(
            "the access token must carry roles and an organisation code "
            "(letters, digits and '-', at most 20)"
        )
    return Principal(
        user=str(claims["sub"]),
        roles=roles,
        org=org,
        ics=str(claims.get("ics", "")),
        name=str(claims.get("name", "")),
        # the deployment's own issuer keys users by sub (see Principal)
        issuer="" if claims["iss"] == settings.jwt_issuer else str(claims["iss"]),
    )


def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    principal = verify_token(get_settings(), token.strip())
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

_service_tokens: dict[str, tuple[str, datetime]] = {}


def service_token(settings: Settings, service: str) -> str:
    """The bearer token a Waymark service calls another's API with.

    In an ICS deployment it is the client-credentials token the identity provider issued,
    mounted at `service_token_path` (re-read on every call, so rotation needs no restart).
    Locally it is minted with the local private key: role `service`, organisation `WAYMARK`,
    subject `service:<name>`, short-lived and reused until close to expiry.
    """
    if settings.service_token_path is not None:
        return settings.service_token_path.read_text().strip()
    cached = _service_tokens.get(service)
    now = datetime.now(UTC)
    if cached is not None and cached[1] - now > timedelta(minutes=2):
        return cached[0]
    ttl = timedelta(minutes=15)
    tok = mint_token(
        settings,
        sub=f"service:{service}",
        roles=[Role.SERVICE.value],
        org="WAYMARK",
        ics=settings.ics,
        name=f"Waymark {service}",
        ttl=ttl,
    )
    _service_tokens[service] = (tok, now + ttl)
    return tok
