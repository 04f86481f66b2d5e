"""The referral rules: pure and synchronous, no I/O."""

from __future__ import annotations

import re
from enum import StrEnum

from shared.errors import ValidationFailed


class ReferralState(StrEnum):
    """States aligned with NHS e-RS and the FHIR Task states (see issue #3 for the full
    lifecycle; the foundation creates referrals in `submitted`)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETURNED = "returned"
    BOOKED = "booked"
    ATTENDED = "attended"
    DID_NOT_ATTEND = "did_not_attend"
    DISCHARGED = "discharged"
    CANCELLED = "cancelled"
    ON_HOLD = "on_hold"


class Source(StrEnum):
    GP = "gp"
    SELF = "self"
    WORKPLACE = "workplace"
    EMERGENCY_DEPARTMENT = "emergency_department"
    ONWARD = "onward"


class Priority(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"


# ASCII digits only: \d would accept other scripts' digits, and $ a trailing newline
_NHS_DIGITS = re.compile(r"[0-9]{10}")


def nhs_number_is_valid(value: str) -> bool:
    """NHS number Modulus 11 check (NHS Data Dictionary, "NHS Number"):
    weight digits 1-9 by 10..2, sum, take 11 - (sum mod 11); 11 means check digit 0, 10 means
    the number is invalid; the result must equal the 10th digit."""
    digits = value.replace(" ", "")
    if not _NHS_DIGITS.fullmatch(digits):
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == int(digits[9])


def normalise_nhs_number(value: str) -> str:
    digits = value.replace(" ", "")
    if not nhs_number_is_valid(digits):
        raise ValidationFailed("nhs_number is not a valid NHS number (10 digits with a correct "
                               "Modulus 11 check digit)")
    return digits


def check_new_referral(*, consent_to_referral: bool, from_org: str, to_org: str,
                       source: Source, referred_from: str | None) -> None:
    if not consent_to_referral:
        raise ValidationFailed("the patient's consent to the referral is required "
                               "(consent_to_referral must be true)")
    if source is Source.ONWARD and not referred_from:
        raise ValidationFailed("an onward referral must name the referral it came out of "
                               "(referred_from)")
