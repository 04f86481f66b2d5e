"""The notifications service's own settings (environment `WAYMARK_DUTY_ROTA_*`).

The duty rota: who hears of a PHQ-9 item 9 safety alert that nobody acknowledged within the
hour (the journey escalates it; docs/clinical-safety/alert-rules.md). The NHS Long Term Plan
(2019) commits every area to 24/7 urgent mental health crisis care; the ICS's own escalation
policy names the rota that answers for it when the plan holder and the GP practice have not.
Configure the rota's name, its organisation code (its team inbox in Waymark) and its
monitored mailbox:

    WAYMARK_DUTY_ROTA_NAME="North Region ICS mental health duty rota"
    WAYMARK_DUTY_ROTA_ORG=QXX-DUTY
    WAYMARK_DUTY_ROTA_EMAIL=mh.duty.rota@example.nhs.uk

Locally (deployment mode `local`) a made-up rota stands in, its mail caught by the dev SMTP
sink; in production the email must be set, and a dispatcher without it refuses to start.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.identifiers import ORG_CODE
from shared.settings import Settings

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


class DutyRota(BaseSettings):
    """The ICS's named duty rota: its name, organisation code and contact email."""

    model_config = SettingsConfigDict(env_prefix="WAYMARK_DUTY_ROTA_", extra="ignore", frozen=True)

    name: str = "ICS mental health duty rota"
    # empty: "<ICS>-DUTY", like the information governance team's "<ICS>-IG"
    org: str = ""
    # empty: allowed in local mode only (the dev sink takes duty-rota@waymark.invalid)
    email: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not 0 < len(v) <= 120 or any(ord(c) < 32 for c in v):
            raise ValueError("the duty rota's name is 1-120 printable characters")
        return v

    @field_validator("org")
    @classmethod
    def _org(cls, v: str) -> str:
        if v and not ORG_CODE.match(v):
            raise ValueError(
                "the duty rota's organisation is an ODS-style code "
                "(letters, digits, '-', at most 20)"
            )
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip()
        if v and (len(v) > 254 or ".." in v or not _EMAIL.match(v)):
            raise ValueError("the duty rota's email must be an address such as duty@example.nhs.uk")
        return v

    def org_code(self, settings: Settings) -> str:
        return self.org or f"{settings.ics}-DUTY"[:20]

    def address(self, settings: Settings) -> str:
        if self.email:
            return self.email
        if settings.deployment_mode == "local":
            return "duty-rota@waymark.invalid"
        raise ValueError(
            "WAYMARK_DUTY_ROTA_EMAIL is not set: escalated safety alerts would "
            "reach no one's mailbox (README, Configuration)"
        )


def duty_rota(settings: Settings) -> DutyRota:
    """The configured rota, checked now (fail fast: a dispatcher starts only with one)."""
    rota = DutyRota()
    rota.address(settings)
    return rota


class ContactFigureSettings(BaseSettings):
    """The overview's unplanned-contact figures (encounters/reports.py), environment
    `WAYMARK_CONTACT_FIGURES_*`. Source of both defaults: the report Waymark serves found that
    66% of people attending A&E with pain had more than three contacts in the previous six
    months; six months is taken as 182 days (26 weeks)."""

    model_config = SettingsConfigDict(
        env_prefix="WAYMARK_CONTACT_FIGURES_", extra="ignore", frozen=True
    )

    window_days: int = Field(default=182, ge=7, le=730)
    frequent_above: int = Field(default=3, ge=0, le=100)


def contact_figures() -> ContactFigureSettings:
    return ContactFigureSettings()
