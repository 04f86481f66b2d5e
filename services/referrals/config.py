"""The referrals service's own settings (env prefix WAYMARK_REFERRALS_), beside the shared
ones in shared/settings.py."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReferralsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_REFERRALS_", extra="ignore", frozen=True)

    #: the credentials (issuer-keyed identities, `Principal.identity`) of the integration
    #: service: the only callers of the historical import. Its client credentials token's
    #: subject is its client id: locally `waymark-integration` (shared.auth.service_token); in
    #: an ICS deployment set it to the client id the identity provider issued to that service.
    history_importers: list[str] = Field(default_factory=lambda: ["waymark-integration"])
    #: the earliest date a historical step may carry: e-RS went live in 2004 (as Choose and
    #: Book); anything before 2000 is a data error, not history
    history_earliest: date = date(2000, 1, 1)
    #: a history is a referral's lifecycle: a few dozen steps at most (rebookings included)
    history_max_steps: int = Field(default=100, ge=1, le=1000)
    #: how long a read of the directory API (mapping an external service code) may take
    directory_timeout_seconds: float = Field(default=5.0, gt=0, le=60)


@lru_cache(maxsize=1)
def get_referrals_settings() -> ReferralsSettings:
    return ReferralsSettings()
