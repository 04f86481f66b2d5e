"""The identity settings (OpenID Connect issuer, claim mapping, OAuth clients), a part of
`shared.settings.Settings` kept in a module of its own. Read with the same `WAYMARK_` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IdentitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # identity (OpenID Connect): access tokens are JWTs from this issuer, verified with the keys
    # its discovery document's jwks_uri publishes (cached; fetched again on an unknown `kid`, so a
    # key rotation needs no restart). Empty: the local stack's own provider at
    # http://127.0.0.1:<api_port_base + 40> (devtools/idp); production refuses to start without one
    oidc_issuer: str = ""
    jwt_audience: str = "waymark"
    # how claims become Waymark's roles and organisation: config/identity/<name>.toml
    # (waymark: the claims as Waymark names them; cis2: NHS CIS2 RBAC; generic: Entra ID/Keycloak)
    oidc_claim_mapping: str = Field(default="waymark", pattern=r"^[A-Za-z0-9_./-]{1,300}$")
    # leeway for exp, nbf and iat between this host's clock and the issuer's
    oidc_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    # the signing keys are fetched again after this long, and at most this often on an unknown kid
    oidc_jwks_max_age_seconds: int = Field(default=3600, ge=10)
    oidc_jwks_min_refresh_seconds: float = Field(default=5.0, ge=0)
    # tokens verified recently, kept per API process so a caller's next request skips the
    # signature check (issue #20: ~9% of a create's CPU). A hit still needs the token unexpired
    # and its signing key still the one the fresh JWKS holds, so a key removed from the JWKS
    # stops its tokens as soon as the keys are fetched again, as without the cache. 10 000
    # covers every user of an ICS active within a token's lifetime; 0 turns it off
    oidc_verified_token_cache_size: int = Field(default=10_000, ge=0)
    # this process's own OAuth client (client credentials) for calling the other services' APIs;
    # empty id: the local provider's client `waymark-<service>` with its generated secret
    oauth_client_id: str = ""
    oauth_client_secret_path: Path | None = None
    # the dashboard, an OpenID Connect relying party of the issuer (authorization code + PKCE);
    # empty id: the local provider's `waymark-dashboard` client
    dashboard_client_id: str = ""
    dashboard_client_secret_path: Path | None = None
    # partner onboarding registers partners' clients at the issuer's registration_endpoint
    # (RFC 7591) with this initial access token; empty: the local provider's own
    # (<home>/keys/idp/<instance>/secrets/registration-token). An issuer without dynamic
    # registration: clients registered there by hand are recorded with their client id
    oidc_registration_token_path: Path | None = None
    # AES-256-GCM key sealing each partner client's registration access token at rest (RFC 7592:
    # it reads, rotates and deletes the client); empty: <home>/keys/partner-clients.key, made
    # locally on first use (production: provide it)
    partner_client_seal_key_path: Path | None = None
    # the dashboard's public origin (https://waymark.example.nhs.uk): its redirect and
    # post-logout URIs are <this>/dashboard/auth/callback and <this>/dashboard/signed-out;
    # empty: http://127.0.0.1:<notifications API port> (local); production needs it
    dashboard_public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    # Temporal's authorizer (Kubernetes: deploy/k8s/temporal-values.yaml) takes a bearer token:
    # when set, every Temporal client sends its process's own client credentials token for this
    # scope (the ICS's provider puts Temporal's `permissions` claim in it), refreshed before it
    # expires; empty (local): no token
    temporal_oauth_scope: str = ""

    def registration_token_file(self) -> Path:
        """Partner onboarding's initial access token (`local_idp_dir` and `home` are
        Settings' own)."""
        local = self.local_idp_dir / "secrets" / "registration-token"  # type: ignore[attr-defined]
        return self.oidc_registration_token_path or local

    def partner_client_seal_key_file(self) -> Path:
        home: Path = self.home  # type: ignore[attr-defined]
        return self.partner_client_seal_key_path or home / "keys" / "partner-clients.key"

    @model_validator(mode="after")
    def _production_has_an_issuer(self) -> IdentitySettings:
        # production has no local provider and no dev sign-in: without the ICS's issuer nobody
        # could sign in and no token could be verified, so the process refuses to start
        # deployment_mode is Settings' own field (shared/settings.py)
        if getattr(self, "deployment_mode", "local") == "production":
            if not self.oidc_issuer:
                raise ValueError(
                    "deployment_mode production needs the ICS's OpenID issuer: set "
                    "WAYMARK_OIDC_ISSUER (e.g. https://am.nhsidentity.spineservices.nhs.uk/"
                    "openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare)"
                )
            if not self.oidc_issuer.startswith("https://"):
                raise ValueError("the OpenID issuer must be an https:// URL in production")
            if not self.dashboard_public_url.startswith("https://"):
                raise ValueError(
                    "deployment_mode production needs the dashboard's public https:// origin "
                    "(WAYMARK_DASHBOARD_PUBLIC_URL): the provider sends people back there"
                )
        if self.temporal_oauth_scope and not (
            self.oauth_client_id and self.oauth_client_secret_path
        ):
            raise ValueError(
                "temporal_oauth_scope needs this process's own client: oauth_client_id and "
                "oauth_client_secret_path"
            )
        return self


class KafkaIdentitySettings(BaseSettings):
    """Who a Kafka client is (SASL) and how it checks the broker (TLS)."""

    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # how every Kafka client authenticates (shared/kafka_security.py): the local broker takes
    # SCRAM-SHA-512 over SASL_PLAINTEXT on loopback; production SASL_SSL with the cluster's CA.
    # Each process kind is its own principal (shared/kafka_principals.py); `waymark-admin`
    # (topics, devtools, tests) is the broker's super user
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = Field(default="waymark-admin", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # empty: <home>/kafka/users/<username>.password, generated by `waymark up`
    kafka_sasl_password_path: Path | None = None
    # SASL_SSL: the CA (PEM) the broker's certificate is checked against; empty: the system's
    kafka_ssl_ca_path: Path | None = None
