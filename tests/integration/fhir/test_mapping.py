"""The FHIR mapping's pure rules, case by case: kinds, planned, statuses, the patient, the
organisation, codes, identity and control ids, and the notification's status. No I/O."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from services.integration.domain import UnmappableReport
from services.integration.fhir import mapping, notifications, validation
from shared.vocabulary import ContactKind, ContactStatus
from tests.integration.fhir.support import appointment, encounter

NHS = "9434765919"
KIND = mapping.CONTACT_KIND_SYSTEM
ACT = mapping.ACT_CODE
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def enc(**kw: Any) -> dict[str, Any]:
    return encounter(NHS, **kw)


def mapped(resource: dict[str, Any], org: str = "RX1", ctx: Any = None) -> Any:
    return mapping.report(resource, source_org=org, ctx=ctx)


def refused(resource: dict[str, Any], org: str = "RX1", ctx: Any = None) -> str:
    with pytest.raises(UnmappableReport) as exc:
        mapped(resource, org, ctx)
    return str(exc.value)


@pytest.mark.parametrize(
    ("cls", "org", "kind"),
    [
        ("EMER", "RX1", ContactKind.AE_ATTENDANCE),
        ("IMP", "RX1", ContactKind.ADMISSION),
        ("ACUTE", "RX1", ContactKind.ADMISSION),
        ("NONAC", "RX1", ContactKind.ADMISSION),
        ("AMB", "A81001", ContactKind.GP_APPOINTMENT),
        ("AMB", "RX1", ContactKind.OUTPATIENT_APPOINTMENT),
        ("AMB", "RX101", ContactKind.OUTPATIENT_APPOINTMENT),
    ],
)
def test_the_class_gives_the_kind(cls: str, org: str, kind: ContactKind) -> None:
    resource = enc(**{"class": {"system": ACT, "code": cls}})
    resource["serviceProvider"] = {"identifier": {"system": ODS, "value": org}}
    assert mapped(resource).contact_kind is kind


@pytest.mark.parametrize("kind", list(ContactKind))
def test_a_kind_coding_wins_over_the_class(kind: ContactKind) -> None:
    resource = enc(serviceType={"coding": [{"system": KIND, "code": kind.value}]})
    assert mapped(resource).contact_kind is kind
    typed = enc(type=[{"coding": [{"system": KIND, "code": kind.value}]}])
    assert mapped(typed).contact_kind is kind


@pytest.mark.parametrize("cls", ["VR", "HH", "PRENC", "SS", "FLD", None])
def test_a_class_that_does_not_say_the_kind_is_refused(cls: str | None) -> None:
    resource = enc(**{"class": {"system": ACT, "code": cls}})
    assert refused(resource).startswith("Encounter.class:")


def test_a_class_of_another_system_says_nothing() -> None:
    resource = enc(**{"class": {"system": "https://example.org/classes", "code": "EMER"}})
    assert "contact-kind" in refused(resource)


@pytest.mark.parametrize(
    ("priority", "planned"),
    [
        ("EM", False),
        ("UR", False),
        ("S", False),
        ("A", False),
        ("EL", True),
        ("R", True),
        (None, None),
    ],
)
def test_the_priority_says_whether_an_admission_was_planned(
    priority: str | None, planned: bool | None
) -> None:
    resource = enc(**{"class": {"system": ACT, "code": "IMP"}})
    if priority:
        resource["priority"] = {"coding": [{"system": mapping.ACT_PRIORITY, "code": priority}]}
    assert mapped(resource).planned is planned


def test_an_emergency_class_is_unplanned_whatever_the_priority() -> None:
    resource = enc(priority={"coding": [{"system": mapping.ACT_PRIORITY, "code": "EL"}]})
    assert mapped(resource).planned is False


@pytest.mark.parametrize(("fhir", "ours"), list(mapping.ENCOUNTER_STATUS.items()))
def test_every_encounter_status_maps(fhir: str, ours: ContactStatus) -> None:
    assert mapped(enc(status=fhir)).status is ours


@pytest.mark.parametrize(("fhir", "ours"), list(mapping.APPOINTMENT_STATUS.items()))
def test_every_appointment_status_maps(fhir: str, ours: ContactStatus) -> None:
    assert mapped(appointment(NHS, status=fhir)).status is ours


@pytest.mark.parametrize("status", ["proposed", "pending", "waitlist"])
def test_an_appointment_not_yet_booked_is_refused(status: str) -> None:
    assert "not booked yet" in refused(appointment(NHS, status=status))


@pytest.mark.parametrize(
    ("types", "planned"),
    [(["EMERGENCY"], False), (["WALKIN"], False), (["ROUTINE"], True), ([], True)],
)
def test_the_appointment_type_says_whether_it_was_planned(types: list[str], planned: bool) -> None:
    resource = appointment(NHS)
    if types:
        resource["appointmentType"] = {
            "coding": [{"system": mapping.APPOINTMENT_TYPE, "code": t} for t in types]
        }
    assert mapped(resource).planned is planned


def test_an_appointment_at_a_trust_is_an_outpatient_appointment() -> None:
    resource = appointment(NHS)
    resource["participant"][1]["actor"]["identifier"]["value"] = "RX1"
    report = mapped(resource, org="A81001")
    assert report.contact_kind is ContactKind.OUTPATIENT_APPOINTMENT and report.source_org == "RX1"


def test_an_appointment_without_an_organisation_is_the_sources() -> None:
    resource = appointment(NHS)
    del resource["participant"][1]
    assert mapped(resource, org="B82005").source_org == "B82005"
    assert mapped(resource, org="B82005").contact_kind is ContactKind.GP_APPOINTMENT


class TestThePatient:
    def test_by_identifier(self) -> None:
        assert mapped(enc()).nhs_number == NHS

    def test_spaces_in_the_nhs_number_are_dropped(self) -> None:
        resource = enc(
            subject={"identifier": {"system": mapping.NHS_NUMBER_SYSTEM, "value": "943 476 5919"}}
        )
        assert mapped(resource).nhs_number == NHS

    def test_by_a_contained_patient(self) -> None:
        resource = enc(
            contained=[
                {
                    "resourceType": "Patient",
                    "id": "p",
                    "identifier": [{"system": mapping.NHS_NUMBER_SYSTEM, "value": NHS}],
                }
            ],
            subject={"reference": "#p"},
        )
        assert mapped(resource).nhs_number == NHS

    @pytest.mark.parametrize(
        "ref", ["urn:uuid:1", "Patient/p1", "https://x.example/fhir/Patient/p1"]
    )
    def test_by_a_patient_of_the_same_bundle(self, ref: str) -> None:
        patient = {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": mapping.NHS_NUMBER_SYSTEM, "value": NHS}],
        }
        ctx = mapping.Context([{"fullUrl": "urn:uuid:1", "resource": patient}])
        assert mapped(enc(subject={"reference": ref}), ctx=ctx).nhs_number == NHS

    def test_another_identifier_system_is_not_an_nhs_number(self) -> None:
        resource = enc(
            subject={"identifier": {"system": "https://pas.example.org/mrn", "value": NHS}}
        )
        assert refused(resource).startswith("Encounter.subject:")

    def test_a_reference_to_something_else_is_refused(self) -> None:
        org = {"resourceType": "Organization", "id": "o"}
        ctx = mapping.Context([{"fullUrl": "urn:uuid:o", "resource": org}])
        assert "neither a contained Patient" in refused(
            enc(subject={"reference": "urn:uuid:o"}), ctx=ctx
        )


class TestCodes:
    def test_only_snomed_codings_are_read(self) -> None:
        resource = enc(
            reasonCode=[{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]}]
        )
        assert mapped(resource).chief_complaint is None

    def test_the_first_snomed_coding_is_the_chief_complaint(self) -> None:
        resource = enc(
            reasonCode=[
                {
                    "coding": [
                        {"system": "x", "code": "1"},
                        {"system": mapping.SNOMED, "code": "22253000"},
                    ]
                }
            ]
        )
        assert mapped(resource).chief_complaint == "22253000"

    def test_diagnoses_come_from_the_conditions_referred_to(self) -> None:
        condition = {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "#p"},
            "code": {"coding": [{"system": mapping.SNOMED, "code": "279039007"}]},
        }
        resource = enc(
            contained=[condition],
            diagnosis=[
                {"condition": {"reference": "#c1"}},
                {"condition": {"reference": "#nowhere"}},
            ],
        )
        assert mapped(resource).diagnosis_codes == ("279039007",)

    def test_the_discharge_destination(self) -> None:
        resource = enc(
            hospitalization={
                "dischargeDisposition": {
                    "coding": [{"system": mapping.SNOMED, "code": "306689006"}]
                }
            }
        )
        assert mapped(resource).discharge_destination == "306689006"


class TestTimes:
    @pytest.mark.parametrize(
        ("start", "words"),
        [
            ("2026-01-02", "date"),
            ("2026-01", "date"),
            ("2026-01-02T10:00:00", "time zone"),
            ("soon-ish-later", "not a date"),
        ],
    )
    def test_a_start_waymark_cannot_place_is_refused(self, start: str, words: str) -> None:
        assert words in refused(enc(period={"start": start}))

    def test_the_zone_is_kept(self) -> None:
        report = mapped(enc(period={"start": "2026-01-02T10:00:00+01:00"}))
        assert report.started_at == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


class TestIdentity:
    def test_the_first_identifier_with_a_value_is_the_key(self) -> None:
        resource = enc(identifier=[{"system": "a"}, {"system": "b", "value": "2"}], id="x")
        assert mapping.resource_key(resource) == "b|2"

    def test_without_an_identifier_the_id(self) -> None:
        assert mapping.resource_key({"resourceType": "Encounter", "id": "x"}) == "Encounter/x"
        assert mapping.resource_key({"resourceType": "Appointment", "id": "x"}) == "Appointment/x"
        assert mapping.resource_key({}) is None

    def test_a_bundle_has_one_identifier(self) -> None:
        assert mapping.resource_key({"identifier": {"system": "s", "value": "v"}}) == "s|v"

    def test_the_control_id_is_versioned(self) -> None:
        resource = enc(meta={"versionId": "4"})
        key = mapping.resource_key(resource)
        assert mapping.control_id(resource) == f"Encounter/{key}/_history/4"

    def test_without_a_version_the_content_decides(self) -> None:
        resource = enc()
        same = copy.deepcopy(resource)
        other = enc(identifier=resource["identifier"], status="cancelled")
        assert mapping.control_id(resource) == mapping.control_id(same)
        assert mapping.control_id(resource) != mapping.control_id(other)
        assert mapping.control_id(resource).split("#")[0] == mapping.control_id(other).split("#")[0]

    def test_key_order_does_not_change_the_digest(self) -> None:
        resource = enc()
        reordered = dict(reversed(list(resource.items())))
        assert mapping.control_id(resource) == mapping.control_id(reordered)


def test_the_answer_names_no_patient_and_no_source_identifier() -> None:
    body = mapping.as_encounter(
        encounter_id="e1",
        revision=3,
        updated_at=None,
        contact_kind="nhs_111",
        status="did_not_attend",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=None,
        source_org="RX1",
    )
    assert body["status"] == "cancelled" and body["class"]["code"] == "VR"
    assert body["meta"] == {"versionId": "3"} and "subject" not in body
    assert not validation.problems(body)


class TestNotificationStatus:
    def params(self, **values: Any) -> dict[str, Any]:
        base = {
            "subscription": {"reference": "Subscription/1"},
            "status": "active",
            "type": "event-notification",
        }
        base.update(values)
        parameter = []
        for name, value in base.items():
            key = "valueReference" if isinstance(value, dict) else "valueCode"
            parameter.append({"name": name, key: value})
        return {
            "resourceType": "Bundle",
            "type": "history",
            "entry": [{"resource": {"resourceType": "Parameters", "parameter": parameter}}],
        }

    def test_the_status_is_read(self) -> None:
        note = notifications.notification(self.params())
        assert (note.subscription, note.status, note.type) == (
            "Subscription/1",
            "active",
            "event-notification",
        )

    @pytest.mark.parametrize(("name", "value"), [("status", "sleepy"), ("type", "gossip")])
    def test_codes_outside_the_value_sets_are_refused(self, name: str, value: str) -> None:
        with pytest.raises(validation.FhirInvalid):
            notifications.notification(self.params(**{name: value}))

    def test_no_subscription_is_refused(self) -> None:
        raw = self.params()
        raw["entry"][0]["resource"]["parameter"].pop(0)
        with pytest.raises(validation.FhirInvalid, match="subscription"):
            notifications.notification(raw)
