"""Events published by the integration service on `waymark.encounters.v1`: a person's contacts
with urgent and primary care, as the EHRs an ICS runs report them (HL7 v2 ADT/SIU, FHIR
Encounter/Appointment, bulk history at go-live).

One event type: `uk.waymark.encounter.recorded`, sent whenever Waymark learns of a contact or a
change to one (arrived, finished, cancelled, entered in error). `revision` rises with each
change of one encounter, so a consumer keeps the highest it has seen. Codes only: the source's
identifiers, names, NHS numbers and free text stay in the integration service. The subject is
the patient's pseudonymous id, the same keyed pseudonym the other services use.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE
from shared.vocabulary import ContactKind, ContactStatus

SNOMED_CODE = r"^[1-9][0-9]{5,17}$"  # SCTID: 6-18 digits, no leading zero
SOURCE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


@REGISTRY.register
class EncounterRecorded(EventData):
    """A contact with care, or a change to one."""

    SOURCE = "waymark/integration"
    EVENT_TYPE = "uk.waymark.encounter.recorded"
    VERSION = 1

    encounter_id: str = Field(max_length=64)  # Waymark's id (a UUID), never the source's
    revision: int = Field(ge=1)
    contact_kind: ContactKind
    # false for an A&E, 111, out-of-hours or crisis contact, a same-day GP appointment or an
    # emergency admission
    planned: bool
    status: ContactStatus
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    # where the contact happened (ODS code) and the registered source system that told us
    source_org: str = Field(pattern=ORG_CODE)
    source_system: str = Field(pattern=SOURCE_ID)
    channel: Literal["hl7v2", "fhir", "bulk"]
    # SNOMED CT: the ECDS chief complaint (or the appointment's reason), diagnoses
    chief_complaint: str | None = Field(default=None, pattern=SNOMED_CODE)
    diagnosis_codes: list[Annotated[str, Field(pattern=SNOMED_CODE)]] = Field(
        default_factory=list, max_length=20
    )
    # ECDS attendance category ("1" unplanned first attendance ... "4" planned follow-up)
    attendance_category: str | None = Field(default=None, pattern=r"^[1-5]$")
    # SNOMED CT discharge destination (ECDS)
    discharge_destination: str | None = Field(default=None, pattern=SNOMED_CODE)
