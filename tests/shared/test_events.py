"""Event envelope, registry, upcasting and the exported JSON Schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import jsonschema
import pytest
from pydantic import ValidationError

from shared.events.envelope import CloudEvent, EventData, make_event
from shared.events.referrals import ReferralSubmitted
from shared.events.registry import SCHEMA_DIR, EventRegistry, UnknownEventType, load_all

PERSONAL_FIELD_WORDS = (
    "name",
    "nhs",
    "birth",
    "dob",
    "address",
    "phone",
    "email",
    "summary",
    "note",
    "free_text",
)


def _submitted(**kw):  # type: ignore[no-untyped-def]
    data = dict(
        referral_id="r-1",
        from_org="GP-1",
        to_org="PAIN-1",
        to_service_id="svc-1",
        service_category="pain_management",
        reason_codes=["279039007"],
        priority="routine",
        state="submitted",
    )
    data.update(kw)
    return ReferralSubmitted(**data)


class TestEnvelope:
    def test_make_event_fills_the_cloudevents_attributes(self):
        e = make_event(_submitted(), subject="pt_abc")
        assert e.specversion == "1.0" and e.type == "uk.waymark.referral.submitted"
        assert e.source == "waymark/referrals" and e.subject == "pt_abc"
        assert e.dataschema.endswith("uk.waymark.referral.submitted.v1.json")
        assert e.version == 1 and e.time.tzinfo is not None
        uuid.UUID(e.id)

    def test_a_naive_time_is_refused(self):
        e = make_event(_submitted(), subject="pt_abc").model_dump()
        e["time"] = datetime(2026, 1, 1)
        with pytest.raises(ValidationError):
            CloudEvent.model_validate(e)

    def test_event_data_is_frozen_and_refuses_unknown_fields(self):
        with pytest.raises(ValidationError):
            _submitted(patient_name="Alex")
        d = _submitted()
        with pytest.raises(ValidationError):
            d.state = "accepted"  # type: ignore[misc]


class TestRegistry:
    def _registry(self) -> EventRegistry:
        reg = EventRegistry()

        class ThingV1(EventData):
            EVENT_TYPE: ClassVar[str] = "uk.waymark.test.thing"
            VERSION: ClassVar[int] = 1
            SOURCE: ClassVar[str] = "tests"
            size: int

        class ThingV2(EventData):
            EVENT_TYPE: ClassVar[str] = "uk.waymark.test.thing"
            VERSION: ClassVar[int] = 2
            SOURCE: ClassVar[str] = "tests"
            size_mm: int

        reg.register(ThingV1)
        reg.register(ThingV2)

        @reg.upcaster("uk.waymark.test.thing", 1)
        def v1_to_v2(data):  # type: ignore[no-untyped-def]
            return {"size_mm": data["size"] * 10}

        self.v1, self.v2 = ThingV1, ThingV2
        return reg

    def test_an_old_version_is_upcast_to_the_newest(self):
        reg = self._registry()
        old = make_event(self.v1(size=3), subject="pt_x")
        parsed = reg.parse(old)
        assert isinstance(parsed, self.v2) and parsed.size_mm == 30

    def test_the_newest_version_parses_as_is(self):
        reg = self._registry()
        parsed = reg.parse(make_event(self.v2(size_mm=7), subject="pt_x"))
        assert parsed == self.v2(size_mm=7)

    def test_a_missing_upcaster_is_an_error(self):
        reg = EventRegistry()

        class A1(EventData):
            EVENT_TYPE: ClassVar[str] = "uk.waymark.test.a"
            VERSION: ClassVar[int] = 1
            SOURCE: ClassVar[str] = "tests"

        class A2(A1):
            VERSION: ClassVar[int] = 2

        reg.register(A1)
        reg.register(A2)
        with pytest.raises(UnknownEventType, match="no upcaster"):
            reg.parse(make_event(A1(), subject="pt_x"))

    def test_registering_a_type_twice_is_refused(self):
        reg = EventRegistry()
        reg.register(ReferralSubmitted)
        with pytest.raises(ValueError, match="twice"):
            reg.register(ReferralSubmitted)

    def test_unknown_types_and_versions_are_refused(self):
        e = make_event(_submitted(), subject="pt_x").model_copy(update={"type": "uk.waymark.nope"})
        with pytest.raises(UnknownEventType):
            load_all().parse(e)


class TestSchemas:
    def test_the_exported_json_schemas_match_the_models(self):
        stale = load_all().stale_schemas()
        assert stale == [], f"run `waymark schemas export`: {stale}"

    def test_every_published_event_validates_against_its_exported_schema(self):
        event = make_event(
            _submitted(reason_codes=["279039007", "35489007"]),
            subject="pt_x",
            time=datetime(2026, 1, 1, tzinfo=UTC),
        )
        schema = json.loads((SCHEMA_DIR / "uk.waymark.referral.submitted.v1.json").read_text())
        jsonschema.validate(event.model_dump(mode="json")["data"], schema)
        bad = dict(event.data, priority="whenever")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)

    @pytest.mark.parametrize("model", load_all().all_models(), ids=lambda m: m.EVENT_TYPE)
    def test_no_event_type_has_a_field_for_personal_details(self, model):
        for field in model.model_fields:
            assert not any(w in field.lower() for w in PERSONAL_FIELD_WORDS), (
                f"{model.__name__}.{field} looks like personal data; events carry ids and codes"
            )
