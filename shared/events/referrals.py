"""Events published by the referrals service on `waymark.referrals.v1`.

Facts consumers need (ids, codes, states) and nothing personal: no names, NHS numbers or
clinical free text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY

SNOMED_CODE = r"^[1-9][0-9]{5,17}$"  # SCTID: 6-18 digits, no leading zero
ORG_CODE = r"^[A-Za-z0-9-]{1,20}$"


class ReferralEventData(EventData):
    SOURCE = "waymark/referrals"

    referral_id: str = Field(max_length=64)
    from_org: str = Field(pattern=ORG_CODE)
    to_org: str = Field(pattern=ORG_CODE)
    to_service_id: str = Field(max_length=64)
    service_category: str = Field(max_length=60)
    reason_codes: list[str] = Field(default_factory=list, max_length=20)
    priority: Literal["routine", "urgent"]
    state: str = Field(max_length=40)
    referred_from: str | None = Field(default=None, max_length=64)


@REGISTRY.register
class ReferralSubmitted(ReferralEventData):
    EVENT_TYPE = "uk.waymark.referral.submitted"
    VERSION = 1
