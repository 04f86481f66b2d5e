"""The local OpenID provider (devtools/idp: npm oidc-provider) and the running APIs together:
tokens from its real flows are accepted, its key rotation needs no API restart, and what it
refuses stays refused."""

from __future__ import annotations

import httpx
import jwt
import pytest

from devtools import tokens
from devtools.stack import idp
from shared import oidc
from shared.errors import Unauthenticated
from shared.settings import Settings


async def whoami(s: Settings, token: str) -> httpx.Response:
    """An authenticated read of a running API (the notifications service's own preferences)."""
    async with httpx.AsyncClient(base_url=s.api_url("notifications"), timeout=15) as c:
        return await c.get("/preferences/me", headers={"Authorization": f"Bearer {token}"})


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


class TestTheProvidersFlows:
    async def test_a_demo_user_signs_in_by_authorization_code_and_the_api_takes_the_token(
        self, running_apps: Settings
    ) -> None:
        token = await tokens.user_token(running_apps, "demo-casey")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == "demo-casey" and claims["client_id"] == idp.CLI_CLIENT
        assert claims["iss"] == running_apps.issuer and claims["aud"] == running_apps.jwt_audience
        r = await whoami(running_apps, token)
        assert r.status_code == 200, r.text

    async def test_a_process_client_gets_a_scoped_token_by_client_credentials(
        self, running_apps: Settings
    ) -> None:
        secret = idp.client_secret(running_apps, "waymark-journeys")
        token, ttl = await oidc.client_credentials(
            running_apps, "waymark-journeys", secret, "directory.read"
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["sub"], claims["scope"], claims["roles"]) == (
            "waymark-journeys",
            "directory.read",
            ["service"],
        )
        assert 0 < ttl <= 300

    async def test_a_wrong_secret_and_a_scope_the_client_lacks_are_refused(
        self, running_apps: Settings
    ) -> None:
        with pytest.raises(Unauthenticated, match="invalid_client"):
            await oidc.client_credentials(running_apps, "waymark-journeys", "not-the-secret")
        secret = idp.client_secret(running_apps, "waymark-journeys")
        with pytest.raises(Unauthenticated, match="invalid_scope"):
            await oidc.client_credentials(
                running_apps, "waymark-journeys", secret, "referral.history_import"
            )

    async def test_an_unknown_demo_user_cannot_sign_in(self, running_apps: Settings) -> None:
        with pytest.raises(tokens.TokenRefused, match="not one of"):
            await tokens.user_token(running_apps, "demo-nobody")


class TestKeyRotation:
    async def test_old_tokens_keep_working_and_new_kids_are_taken_without_a_restart(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        before = await tokens.user_token(s, "demo-lee")
        assert (await whoami(s, before)).status_code == 200
        api_pid = (s.run_dir / "notifications-api.pid").read_text().strip()

        new_kid = await idp.rotate_keys(s)
        after = await tokens.user_token(s, "demo-lee")
        assert kid(after) == new_kid != kid(before)
        # the API had only seen the old key: the new kid makes it fetch the JWKS again
        r = await whoami(s, after)
        assert r.status_code == 200, r.text
        # the old key is still published, so its unexpired tokens still verify
        assert (await whoami(s, before)).status_code == 200
        assert (s.run_dir / "notifications-api.pid").read_text().strip() == api_pid

    async def test_a_token_signed_with_a_key_never_published_is_refused(
        self, running_apps: Settings
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        claims = jwt.decode(
            await tokens.user_token(running_apps, "demo-gita"), options={"verify_signature": False}
        )
        forged = jwt.encode(
            claims,
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": "wm-never-published"},
        )
        r = await whoami(running_apps, forged)
        assert r.status_code == 401 and "wm-never-published" in r.json()["detail"]


class TestTemporalAuthorizerToken:
    async def test_a_temporal_client_sends_its_process_s_bearer_token(
        self, infra: Settings
    ) -> None:
        """With temporal_oauth_scope set (Kubernetes: Temporal's authorizer), the client carries
        the process's own client credentials token for that scope on every call."""
        from shared.auth import verify_token
        from shared.temporal_client import connect

        s = infra.model_copy(
            update={
                "oauth_client_id": "waymark-journeys",
                "oauth_client_secret_path": infra.local_idp_dir / "secrets" / "waymark-journeys",
                "temporal_oauth_scope": "directory.read",
            }
        )
        client = await connect(s)
        scheme, _, token = str(client.rpc_metadata["authorization"]).partition(" ")
        assert scheme == "Bearer"
        p = await verify_token(s, token)
        assert (p.client_id, p.scopes) == ("waymark-journeys", frozenset({"directory.read"}))
        # the dev server has no authorizer: the call goes through with the header on it
        assert await client.service_client.check_health()

    def test_the_scope_needs_the_process_s_own_client(self, infra: Settings) -> None:
        with pytest.raises(ValueError, match="oauth_client_id"):
            Settings(temporal_oauth_scope="temporal.write")


class TestTheProviderIsTheInstancesOwn:
    async def test_a_provider_on_the_port_with_other_keys_is_not_taken_for_ours(
        self, running_apps: Settings, tmp_path
    ) -> None:
        """Another checkout's provider left running on this instance's port has the same issuer
        but its own keys: `waymark up` must not reuse it (our tokens would not verify there)."""
        assert await idp.probe(running_apps)
        elsewhere = running_apps.model_copy(update={"home": tmp_path})  # its own new keys
        assert not await idp.probe(elsewhere)
