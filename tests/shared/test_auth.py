"""Bearer tokens and role checks (shared/auth.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from shared.auth import (
    CurrentPrincipal,
    Principal,
    Role,
    ensure_keys,
    mint_token,
    require_roles,
    verify_token,
)
from shared.errors import PROBLEM_BASE, PROBLEM_JSON, Unauthenticated
from shared.problems import install_error_handlers
from shared.settings import Settings
from tests.conftest import auth


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(s: Settings, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    c: dict[str, Any] = {
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "sub": f"user-{uuid.uuid4().hex[:6]}",
        "roles": ["clinician"],
        "org": "GP-1",
        "ics": "ICS-1",
        "name": "Dr Test",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
    }
    for k, v in overrides.items():
        if v is ...:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def signed(s: Settings, **overrides: Any) -> str:
    """A token signed with the real private key (so only the claims are wrong)."""
    ensure_keys(s)
    return jwt.encode(claims(s, **overrides), s.private_key_path().read_bytes(), algorithm="ES256")


def assert_rejected(s: Settings, token: str, *words: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as exc:
        verify_token(s, token)
    assert exc.value.status == 401
    for w in words:
        assert w in exc.value.message
    return exc.value


class TestMintAndVerify:
    def test_a_minted_token_verifies_to_the_same_principal(self, settings: Settings) -> None:
        sub = f"user-{uuid.uuid4().hex[:6]}"
        token = mint_token(
            settings,
            sub=sub,
            roles=["clinician", "coordinator"],
            org="GP-X",
            ics="ICS-9",
            name="Dr Okafor",
        )
        p = verify_token(settings, token)
        assert p == Principal(
            user=sub,
            roles=frozenset({Role.CLINICIAN, Role.COORDINATOR}),
            org="GP-X",
            ics="ICS-9",
            name="Dr Okafor",
        )
        assert p.identity == sub  # the deployment's own issuer: keyed by sub
        other = Principal(
            user=sub, roles=p.roles, org="GP-X", ics="ICS-9", issuer="https://login.example.org"
        )
        assert other.identity == f"{sub}@https://login.example.org" != p.identity
        assert p.has(Role.COORDINATOR) and p.has(Role.ADMIN, Role.CLINICIAN)
        assert not p.has(Role.PARTNER) and not p.has()

    def test_the_token_is_es256_with_issuer_audience_and_a_unique_id(
        self, settings: Settings
    ) -> None:
        t1 = mint_token(settings, sub="u", roles=["partner"], org="P-1")
        t2 = mint_token(settings, sub="u", roles=["partner"], org="P-1")
        assert jwt.get_unverified_header(t1)["alg"] == "ES256"
        c1 = jwt.decode(t1, options={"verify_signature": False})
        c2 = jwt.decode(t2, options={"verify_signature": False})
        assert (c1["iss"], c1["aud"]) == (settings.jwt_issuer, settings.jwt_audience)
        assert c1["jti"] != c2["jti"]
        assert c1["exp"] - c1["iat"] == 8 * 3600

    def test_minting_an_unknown_role_is_refused(self, settings: Settings) -> None:
        with pytest.raises(ValueError):
            mint_token(settings, sub="u", roles=["superuser"], org="GP-1")

    def test_the_private_key_is_readable_by_its_owner_only(self, settings: Settings) -> None:
        ensure_keys(settings)
        assert settings.private_key_path().stat().st_mode & 0o077 == 0


class TestRejectedTokens:
    def test_an_expired_token_is_rejected(self, settings: Settings) -> None:
        token = mint_token(
            settings, sub="u", roles=["clinician"], org="GP-1", ttl=timedelta(seconds=-1)
        )
        assert_rejected(settings, token, "expired")

    def test_a_token_for_another_audience_is_rejected(self, settings: Settings) -> None:
        assert_rejected(settings, signed(settings, aud="another-service"), "not valid")

    def test_a_token_from_another_issuer_is_rejected(self, settings: Settings) -> None:
        assert_rejected(settings, signed(settings, iss="https://evil.example"), "not valid")

    @pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud"])
    def test_a_token_missing_a_required_claim_is_rejected(
        self, settings: Settings, claim: str
    ) -> None:
        assert_rejected(settings, signed(settings, **{claim: ...}))

    def test_a_token_not_yet_valid_is_rejected(self, settings: Settings) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        assert_rejected(settings, signed(settings, nbf=later, exp=later + timedelta(hours=1)))

    def test_a_tampered_payload_is_rejected(self, settings: Settings) -> None:
        header, payload, sig = signed(settings, roles=["partner"]).split(".")
        forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged["roles"] = ["admin"]
        token = ".".join([header, _b64(json.dumps(forged).encode()), sig])
        assert_rejected(settings, token, "not valid")

    def test_a_tampered_signature_is_rejected(self, settings: Settings) -> None:
        header, payload, sig = signed(settings).split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw[10] ^= 0x01
        assert_rejected(settings, ".".join([header, payload, _b64(bytes(raw))]), "not valid")

    def test_a_token_signed_by_another_ec_key_is_rejected(self, settings: Settings) -> None:
        other = ec.generate_private_key(ec.SECP256R1())
        pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        token = jwt.encode(claims(settings), pem, algorithm="ES256")
        assert_rejected(settings, token, "not valid")

    def test_an_hs256_token_keyed_with_the_public_key_is_rejected(self, settings: Settings) -> None:
        # algorithm confusion: an attacker HMACs with the (public) verification key
        ensure_keys(settings)
        public = settings.public_key_path().read_bytes()
        body = claims(settings, roles=["admin"])
        for k in ("iat", "nbf", "exp"):
            body[k] = int(body[k].timestamp())
        signing_input = (
            _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            + "."
            + _b64(json.dumps(body).encode())
        )
        sig = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        assert_rejected(settings, signing_input + "." + _b64(sig), "not valid")

    def test_an_unsigned_alg_none_token_is_rejected(self, settings: Settings) -> None:
        token = jwt.encode(claims(settings, roles=["admin"]), key=None, algorithm="none")
        assert_rejected(settings, token, "not valid")

    @pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "Bearer x", "e30.e30.e30"])
    def test_garbage_is_rejected(self, settings: Settings, garbage: str) -> None:
        assert_rejected(settings, garbage, "not valid")

    def test_a_token_with_an_unknown_role_is_rejected(self, settings: Settings) -> None:
        assert_rejected(
            settings, signed(settings, roles=["clinician", "superuser"]), "unknown role"
        )

    @pytest.mark.parametrize("roles", [[], ...], ids=["empty", "absent"])
    def test_a_token_without_roles_is_rejected(self, settings: Settings, roles: Any) -> None:
        assert_rejected(settings, signed(settings, roles=roles), "roles")

    @pytest.mark.parametrize("roles", [None, 5, 1.5], ids=["null", "number", "float"])
    def test_a_token_with_malformed_roles_is_rejected_not_crashing(
        self, settings: Settings, roles: Any
    ) -> None:
        # a signed token with a malformed claim must be a 401, not an unhandled TypeError
        assert_rejected(settings, signed(settings, roles=roles))

    @pytest.mark.parametrize(
        "org", [..., "", None, 42, ["GP-1"]], ids=["absent", "empty", "null", "number", "list"]
    )
    def test_a_token_without_an_organisation_is_rejected(
        self, settings: Settings, org: Any
    ) -> None:
        assert_rejected(settings, signed(settings, org=org), "organisation")

    def test_a_service_without_a_verification_key_rejects_every_token(
        self, settings: Settings, tmp_path: Any
    ) -> None:
        keyless = settings.model_copy(update={"jwt_public_key_path": tmp_path / "absent.pem"})
        token = mint_token(settings, sub="u", roles=["clinician"], org="GP-1")
        assert_rejected(keyless, token, "no token verification key")


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/coordinators-only", dependencies=[require_roles(Role.COORDINATOR, Role.ADMIN)])
    async def coordinators_only() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return {
            "user": principal.user,
            "org": principal.org,
            "roles": sorted(r.value for r in principal.roles),
        }

    return app


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as c:
        yield c


class TestRequireRoles:
    @pytest.mark.parametrize("role", ["coordinator", "admin", ["clinician", "coordinator"]])
    async def test_a_caller_with_one_of_the_roles_gets_through(
        self, client: httpx.AsyncClient, settings: Settings, role: Any
    ) -> None:
        r = await client.get("/coordinators-only", headers=auth(settings, role=role, org="ICB-1"))
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": "yes"}

    @pytest.mark.parametrize(
        "role", ["clinician", "service_staff", "partner", ["clinician", "partner"]]
    )
    async def test_a_caller_without_the_roles_gets_a_403_problem(
        self, client: httpx.AsyncClient, settings: Settings, role: Any
    ) -> None:
        r = await client.get("/coordinators-only", headers=auth(settings, role=role, org="GP-1"))
        assert r.status_code == 403
        assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
        body = r.json()
        assert body["type"] == PROBLEM_BASE + "forbidden"
        assert "admin, coordinator" in body["detail"]
        assert body["instance"] == "/coordinators-only"

    async def test_no_token_is_a_401_with_a_bearer_challenge(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.get("/coordinators-only")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON

    @pytest.mark.parametrize(
        "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token x", "Bearer not-a-jwt"]
    )
    async def test_a_malformed_authorization_header_is_a_401(
        self, client: httpx.AsyncClient, header: str
    ) -> None:
        r = await client.get("/coordinators-only", headers={"Authorization": header})
        assert r.status_code == 401
        assert r.json()["type"] == PROBLEM_BASE + "unauthenticated"

    async def test_the_scheme_is_case_insensitive(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        token = mint_token(settings, sub="case-user", roles=["partner"], org="P-1")
        r = await client.get("/whoami", headers={"Authorization": f"bearer {token}"})
        assert r.status_code == 200
        assert r.json() == {"user": "case-user", "org": "P-1", "roles": ["partner"]}

    async def test_an_expired_token_is_a_401_that_says_so(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        token = mint_token(
            settings, sub="u", roles=["admin"], org="ICB-1", ttl=timedelta(seconds=-1)
        )
        r = await client.get("/coordinators-only", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]
