"""The Open Referral UK feed's settings (the directory's `/oruk` read API), a part of
`shared.settings.Settings` kept in a module of its own. Read with the same `WAYMARK_` prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrukSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # a service directory is public information: the ORUK feed (GET /oruk/...) is read without a
    # token, so ORUK's validator and directory aggregators can read it. False: it needs a token
    # with the directory's read scope, like the rest of the directory API
    oruk_public: bool = True
    # the public feed's token bucket per client address (per API process): this many requests
    # at once, refilled at the rate a minute; an empty bucket answers 429 with Retry-After.
    # 0 a minute turns the limit off
    oruk_rate_limit_per_minute: int = Field(default=600, ge=0)
    oruk_rate_limit_burst: int = Field(default=120, ge=1)
