"""Request and response bodies of the partner onboarding API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, examples=["Acme physiotherapy booking system"])
    scopes: list[str] = Field(
        min_length=1,
        max_length=20,
        examples=[["referral.read", "webhooks.manage"]],
        description="what the client may do: see GET /partner-clients/scopes",
    )
    client_id: str | None = Field(
        default=None,
        max_length=200,
        description="only for an identity provider without dynamic registration: the client "
        "registered there by hand, with these scopes and the org, ics and roles claims",
    )


class ClientOut(BaseModel):
    id: str
    client_id: str = Field(description="the OAuth client id its tokens carry (client_id, sub)")
    name: str
    org: str
    scopes: list[str]
    status: Literal["active", "revoked"]
    registration: Literal["dynamic", "manual"] = Field(
        description="dynamic: registered by Waymark at the provider; manual: registered there "
        "by hand and recorded here"
    )
    secret_version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None
    revoked_at: datetime | None


class ClientWithSecret(ClientOut):
    client_secret: str = Field(
        description="shown only now, never again: Waymark does not keep it. The client gets "
        "tokens with it (client credentials, client_secret_basic) at the token endpoint"
    )
    token_endpoint: str


class ScopeOut(BaseModel):
    scope: str
    allows: str
