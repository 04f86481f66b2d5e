"""Bearer tokens and role checks (shared/auth.py)."""

from __future__ import annotations

import asyncio
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

from shared import auth as auth_module
from shared import oidc
from shared.auth import (
    CurrentPrincipal,
    Principal,
    Role,
    _local_signing_key,
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
        "iss": s.issuer,
        "aud": s.jwt_audience,
        "client_id": "waymark-test",
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
    """A token signed with the provider's real current key (so only the claims are wrong)."""
    kid, key = _local_signing_key(s)
    return jwt.encode(claims(s, **overrides), key, algorithm="ES256", headers={"kid": kid})


async def assert_rejected(s: Settings, token: str, *words: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as exc:
        await verify_token(s, token)
    assert exc.value.status == 401
    for w in words:
        assert w in exc.value.message
    return exc.value


class TestMintAndVerify:
    async def test_a_minted_token_verifies_to_the_same_principal(self, infra: Settings) -> None:
        sub = f"user-{uuid.uuid4().hex[:6]}"
        token = mint_token(
            infra,
            sub=sub,
            roles=["clinician", "coordinator"],
            org="GP-X",
            ics="ICS-9",
            name="Dr Okafor",
        )
        p = await verify_token(infra, token)
        assert p == Principal(
            user=sub,
            roles=frozenset({Role.CLINICIAN, Role.COORDINATOR}),
            org="GP-X",
            ics="ICS-9",
            name="Dr Okafor",
            client_id="waymark-local-mint",
        )
        assert not p.is_client and p.has_scope("anything")  # a person: role and relationships
        assert p.identity == sub  # the deployment's own issuer: keyed by sub
        other = Principal(
            user=sub, roles=p.roles, org="GP-X", ics="ICS-9", issuer="https://login.example.org"
        )
        assert other.identity == f"{sub}@https://login.example.org" != p.identity
        assert p.has(Role.COORDINATOR) and p.has(Role.ADMIN, Role.CLINICIAN)
        assert not p.has(Role.PARTNER) and not p.has()

    async def test_the_token_is_es256_with_issuer_audience_and_a_unique_id(
        self, infra: Settings
    ) -> None:
        t1 = mint_token(infra, sub="u", roles=["partner"], org="P-1")
        t2 = mint_token(infra, sub="u", roles=["partner"], org="P-1")
        assert jwt.get_unverified_header(t1)["alg"] == "ES256"
        c1 = jwt.decode(t1, options={"verify_signature": False})
        c2 = jwt.decode(t2, options={"verify_signature": False})
        assert (c1["iss"], c1["aud"]) == (infra.issuer, infra.jwt_audience)
        assert jwt.get_unverified_header(t1)["kid"] == _local_signing_key(infra)[0]
        assert c1["jti"] != c2["jti"]
        assert c1["exp"] - c1["iat"] == 8 * 3600

    async def test_minting_an_unknown_role_is_refused(self, infra: Settings) -> None:
        with pytest.raises(ValueError):
            mint_token(infra, sub="u", roles=["superuser"], org="GP-1")

    async def test_the_private_keys_are_readable_by_their_owner_only(self, infra: Settings) -> None:
        _local_signing_key(infra)
        assert (infra.local_idp_dir / "jwks.json").stat().st_mode & 0o077 == 0


class TestRejectedTokens:
    async def test_a_token_expired_within_the_clock_skew_is_accepted(self, infra: Settings) -> None:
        token = mint_token(
            infra, sub="u", roles=["clinician"], org="GP-1", ttl=timedelta(seconds=-5)
        )
        assert (await verify_token(infra, token)).user == "u"
        strict = infra.model_copy(update={"oidc_clock_skew_seconds": 0})
        await assert_rejected(strict, token, "expired")

    async def test_a_system_token_carries_its_scopes(self, infra: Settings) -> None:
        token = mint_token(
            infra, sub="p-1", client_id="p-1", roles=["partner"], org="P-1", scope="referral.read"
        )
        p = await verify_token(infra, token)
        assert p.is_client and p.scopes == {"referral.read"} and p.client_id == "p-1"
        assert p.has_scope("referral.read") and not p.has_scope("referral.create")

    async def test_an_expired_token_is_rejected(self, infra: Settings) -> None:
        token = mint_token(
            infra,
            sub="u",
            roles=["clinician"],
            org="GP-1",
            ttl=timedelta(seconds=-infra.oidc_clock_skew_seconds - 5),
        )
        await assert_rejected(infra, token, "expired")

    async def test_a_token_for_another_audience_is_rejected(self, infra: Settings) -> None:
        await assert_rejected(infra, signed(infra, aud="another-service"), "another audience")

    async def test_a_token_from_another_issuer_is_rejected(self, infra: Settings) -> None:
        await assert_rejected(infra, signed(infra, iss="https://evil.example"), "another issuer")

    @pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud", "iat"])
    async def test_a_token_missing_a_required_claim_is_rejected(
        self, infra: Settings, claim: str
    ) -> None:
        await assert_rejected(infra, signed(infra, **{claim: ...}))

    async def test_a_token_not_yet_valid_is_rejected(self, infra: Settings) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        await assert_rejected(infra, signed(infra, nbf=later, exp=later + timedelta(hours=1)))

    async def test_a_tampered_payload_is_rejected(self, infra: Settings) -> None:
        header, payload, sig = signed(infra, roles=["partner"]).split(".")
        forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged["roles"] = ["admin"]
        token = ".".join([header, _b64(json.dumps(forged).encode()), sig])
        await assert_rejected(infra, token, "not valid")

    async def test_a_tampered_signature_is_rejected(self, infra: Settings) -> None:
        header, payload, sig = signed(infra).split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw[10] ^= 0x01
        await assert_rejected(infra, ".".join([header, payload, _b64(bytes(raw))]), "not valid")

    async def test_a_token_signed_by_another_ec_key_is_rejected(self, infra: Settings) -> None:
        other = ec.generate_private_key(ec.SECP256R1())
        pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kid = _local_signing_key(infra)[0]
        token = jwt.encode(claims(infra), pem, algorithm="ES256", headers={"kid": kid})
        await assert_rejected(infra, token, "not valid")

    async def test_an_hs256_token_keyed_with_the_public_key_is_rejected(
        self, infra: Settings
    ) -> None:
        # algorithm confusion: an attacker HMACs with the (public) verification key
        kid, key = _local_signing_key(infra)
        public = json.dumps(
            {
                k: v
                for k, v in json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key)).items()
                if k != "d"
            }
        ).encode()
        body = claims(infra, roles=["admin"])
        for k in ("iat", "nbf", "exp"):
            body[k] = int(body[k].timestamp())
        signing_input = (
            _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
            + "."
            + _b64(json.dumps(body).encode())
        )
        sig = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        await assert_rejected(infra, signing_input + "." + _b64(sig), "HS256")

    async def test_an_unsigned_alg_none_token_is_rejected(self, infra: Settings) -> None:
        token = jwt.encode(claims(infra, roles=["admin"]), key=None, algorithm="none")
        await assert_rejected(infra, token, "'none'")

    @pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "Bearer x", "e30.e30.e30"])
    async def test_garbage_is_rejected(self, infra: Settings, garbage: str) -> None:
        await assert_rejected(infra, garbage)

    async def test_a_token_with_an_unknown_role_is_rejected(self, infra: Settings) -> None:
        await assert_rejected(
            infra, signed(infra, roles=["clinician", "superuser"]), "unknown role"
        )

    @pytest.mark.parametrize("roles", [[], ...], ids=["empty", "absent"])
    async def test_a_token_without_roles_is_rejected(self, infra: Settings, roles: Any) -> None:
        await assert_rejected(infra, signed(infra, roles=roles), "roles")

    @pytest.mark.parametrize("roles", [None, 5, 1.5], ids=["null", "number", "float"])
    async def test_a_token_with_malformed_roles_is_rejected_not_crashing(
        self, infra: Settings, roles: Any
    ) -> None:
        # a signed token with a malformed claim must be a 401, not an unhandled TypeError
        await assert_rejected(infra, signed(infra, roles=roles))

    @pytest.mark.parametrize(
        "org", [..., "", None, 42, ["GP-1"]], ids=["absent", "empty", "null", "number", "list"]
    )
    async def test_a_token_without_an_organisation_is_rejected(
        self, infra: Settings, org: Any
    ) -> None:
        await assert_rejected(infra, signed(infra, org=org), "organisation")

    async def test_a_key_the_issuer_does_not_publish_is_rejected(self, infra: Settings) -> None:
        other = ec.generate_private_key(ec.SECP256R1())
        token = jwt.encode(claims(infra), other, algorithm="ES256", headers={"kid": "wm-forged"})
        await assert_rejected(infra, token, "wm-forged", "not the issuer's")

    async def test_a_token_without_a_kid_is_rejected(self, infra: Settings) -> None:
        _, key = _local_signing_key(infra)
        await assert_rejected(infra, jwt.encode(claims(infra), key, algorithm="ES256"), "kid")

    async def test_a_system_token_without_scopes_is_rejected(self, infra: Settings) -> None:
        # client credentials: the subject is the client; what it may call is its scopes
        token = signed(infra, sub="waymark-test", client_id="waymark-test")
        await assert_rejected(infra, token, "scopes")

    async def test_several_audiences_need_an_authorised_party(self, infra: Settings) -> None:
        token = signed(infra, aud=["waymark", "other-api"], client_id=...)
        await assert_rejected(infra, token, "azp")

    async def test_an_unreachable_issuer_is_a_503_not_a_401(self, infra: Settings) -> None:
        away = infra.model_copy(update={"api_port_base": 18990})  # no provider listens there
        oidc.forget(away)
        kid, key = _local_signing_key(infra)
        token = jwt.encode(claims(away), key, algorithm="ES256", headers={"kid": kid})
        with pytest.raises(oidc.IssuerUnavailable) as exc:
            await verify_token(away, token)
        assert exc.value.status == 503 and exc.value.headers["Retry-After"]


class TestVerifiedTokenCache:
    """verify_token keeps what a token proved (shared/auth.py `_verified`) while the token is
    unexpired and the key that verified it is still the fresh JWKS's; nothing else."""

    @pytest.fixture
    def verifications(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Each full verification (signature and claims) the calls below make."""
        seen: list[str] = []
        real = auth_module._verify

        async def counting(settings: Settings, token: str) -> Any:
            seen.append(token)
            return await real(settings, token)

        monkeypatch.setattr(auth_module, "_verify", counting)
        auth_module._verified.clear()
        return seen

    async def test_a_token_verified_once_is_taken_from_the_cache(
        self, infra: Settings, verifications: list[str]
    ) -> None:
        token = signed(infra)
        first = await verify_token(infra, token)
        again = await verify_token(infra, token)
        assert again == first and verifications == [token]

    async def test_an_expired_token_is_refused_though_it_was_verified_before(
        self, infra: Settings, verifications: list[str]
    ) -> None:
        s = infra.model_copy(update={"oidc_clock_skew_seconds": 0})
        token = signed(s, exp=datetime.now(UTC) + timedelta(seconds=1))
        await verify_token(s, token)
        await asyncio.sleep(1.5)
        await assert_rejected(s, token, "expired")
        assert verifications == [token, token]

    async def test_a_key_no_longer_in_the_fresh_jwks_means_verifying_again(
        self, infra: Settings, verifications: list[str]
    ) -> None:
        token = signed(infra)
        await verify_token(infra, token)
        oidc.forget(infra)  # as after a rotation or the JWKS ageing out: the key is not fresh
        await verify_token(infra, token)
        await verify_token(infra, token)
        assert verifications == [token, token]

    async def test_the_cache_keys_on_the_audience(
        self, infra: Settings, verifications: list[str]
    ) -> None:
        token = signed(infra)
        await verify_token(infra, token)
        other = infra.model_copy(update={"jwt_audience": "another-service"})
        await assert_rejected(other, token, "another audience")

    async def test_the_cache_holds_at_most_its_size_and_nothing_at_size_0(
        self, infra: Settings, verifications: list[str]
    ) -> None:
        small = infra.model_copy(update={"oidc_verified_token_cache_size": 2})
        tokens = [signed(small) for _ in range(3)]
        for t in tokens:
            await verify_token(small, t)
        assert len(auth_module._verified) == 2
        await verify_token(small, tokens[0])  # the oldest went first
        assert verifications == [*tokens, tokens[0]]
        off = infra.model_copy(update={"oidc_verified_token_cache_size": 0})
        auth_module._verified.clear()
        await verify_token(off, tokens[1])
        await verify_token(off, tokens[1])
        assert len(auth_module._verified) == 0 and verifications[-2:] == [tokens[1], tokens[1]]


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
async def client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as c:
        yield c


class TestRequireRoles:
    @pytest.mark.parametrize("role", ["coordinator", "admin", ["clinician", "coordinator"]])
    async def test_a_caller_with_one_of_the_roles_gets_through(
        self, client: httpx.AsyncClient, infra: Settings, role: Any
    ) -> None:
        r = await client.get("/coordinators-only", headers=auth(infra, role=role, org="ICB-1"))
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": "yes"}

    @pytest.mark.parametrize(
        "role", ["clinician", "service_staff", "partner", ["clinician", "partner"]]
    )
    async def test_a_caller_without_the_roles_gets_a_403_problem(
        self, client: httpx.AsyncClient, infra: Settings, role: Any
    ) -> None:
        r = await client.get("/coordinators-only", headers=auth(infra, role=role, org="GP-1"))
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
        self, client: httpx.AsyncClient, infra: Settings
    ) -> None:
        token = mint_token(infra, sub="case-user", roles=["partner"], org="P-1")
        r = await client.get("/whoami", headers={"Authorization": f"bearer {token}"})
        assert r.status_code == 200
        assert r.json() == {"user": "case-user", "org": "P-1", "roles": ["partner"]}

    async def test_an_expired_token_is_a_401_that_says_so(
        self, client: httpx.AsyncClient, infra: Settings
    ) -> None:
        token = mint_token(
            infra,
            sub="u",
            roles=["admin"],
            org="ICB-1",
            ttl=timedelta(seconds=-infra.oidc_clock_skew_seconds - 5),
        )
        r = await client.get("/coordinators-only", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]
