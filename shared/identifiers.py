"""Identifiers every part spells the same way: the NHS number, and the id of a person's journey
workflow (what the alerts inbox and the bridge both address). Pure: no framework imports."""

from __future__ import annotations

import re

from shared.errors import ValidationFailed

#: an organisation's code (ODS codes such as GP practices' "A81001" and Waymark's own such as
#: "ICB-QWO"): what tokens, events and APIs all accept. The pattern as JSON Schema and OpenAPI
#: spell it; ORG_CODE for code that checks one.
ORG_CODE_PATTERN = r"^[A-Za-z0-9-]{1,20}$"
ORG_CODE = re.compile(ORG_CODE_PATTERN)

#: the Temporal task queue the journeys worker polls
JOURNEYS_TASK_QUEUE = "waymark-journeys"


def journey_workflow_id(patient_id: str) -> str:
    """The PatientJourney workflow of the person with this pseudonymous id."""
    return f"journey-{patient_id}"


# --- NHS number ---------------------------------------------------------------------------------

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
        raise ValidationFailed(
            "nhs_number is not a valid NHS number (10 digits with a correct Modulus 11 check digit)"
        )
    return digits
