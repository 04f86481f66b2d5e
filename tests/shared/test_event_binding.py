"""The CloudEvents Kafka binding every writer follows (shared/events/binding.py), checked with
the official SDK as a consumer outside Waymark would read the messages."""

from __future__ import annotations

import json

import pytest

from shared.events.binding import KAFKA_CONTENT_TYPE, kafka_headers
from shared.events.envelope import make_event
from shared.events.referrals import ReferralSubmitted
from shared.outbox import event_bytes
from tests.cloudevents_support import kafka_problem


def _value() -> tuple[bytes, bytes]:
    data = ReferralSubmitted(
        referral_id="r-1",
        from_org="GP-A81001",
        to_org="PAIN-RTH",
        to_service_id="svc-1",
        service_category="pain_management",
        reason_codes=["279039007"],
        priority="routine",
        state="submitted",
    )
    event = make_event(data, subject="pt_1")
    return event.subject.encode(), event_bytes(event.model_dump(mode="json"))


class TestEventBytes:
    PAYLOADS = [
        {"b": 1, "a": [1.5, 0.1, -0.0, 3.0, 123456789.123], "z": {"y": None, "x": True}},
        {"text": 'tab\t "quoted" back\\slash \x01 </script>', "n": -7, "empty": {}},
        {"specversion": "1.0", "data": {"reason_codes": ["279039007"], "state": "submitted"}},
        {"name": "Café Pain Clinic", "emoji": "\U0001f600", "euro": "€"},
    ]

    @pytest.mark.parametrize("payload", PAYLOADS)
    def test_compact_sorted_json_of_the_same_value(self, payload: dict) -> None:
        value = event_bytes(payload)
        assert json.loads(value) == payload
        assert list(json.loads(value)) == sorted(payload)
        compact = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        assert value == compact.encode()
        assert event_bytes(dict(reversed(list(payload.items())))) == value

    @pytest.mark.parametrize("payload", PAYLOADS[:3])
    def test_ascii_events_are_the_bytes_the_standard_library_wrote(self, payload: dict) -> None:
        standard = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        assert event_bytes(payload) == standard

    def test_numbers_keep_their_value(self) -> None:
        payload = {"small": 2e-7, "large": 1e21, "int": 2**53, "negative": -1.25}
        assert json.loads(event_bytes(payload)) == payload

    def test_other_text_is_utf_8(self) -> None:
        assert event_bytes({"n": "é"}) == '{"n":"é"}'.encode()


class TestKafkaStructuredMode:
    def test_the_headers_are_the_content_type_and_what_else_was_given(self) -> None:
        trace = ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
        assert kafka_headers([trace]) == [trace, ("content-type", KAFKA_CONTENT_TYPE.encode())]
        assert KAFKA_CONTENT_TYPE == "application/cloudevents+json; charset=UTF-8"

    def test_a_message_with_the_binding_headers_parses_with_the_sdk(self) -> None:
        key, value = _value()
        assert kafka_problem(kafka_headers(), key, value) is None

    @pytest.mark.parametrize("name", ["ce_id", "ce_type", "CE_source", "ce_specversion"])
    def test_an_attribute_header_is_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="no ce_"):
            kafka_headers([(name, b"x")])

    def test_a_given_content_type_is_replaced_not_doubled(self) -> None:
        assert kafka_headers([("content-type", b"application/json")]) == kafka_headers()

    @pytest.mark.parametrize(
        ("headers", "why"),
        [
            # what the relay wrote before: the SDK takes it for binary mode and refuses it
            (
                [("ce_id", b"x"), ("ce_type", b"t"), ("content-type", KAFKA_CONTENT_TYPE.encode())],
                "Missing required attribute",
            ),
            ([], "content-type header []"),  # the synthetic publisher wrote no header at all
            ([("content-type", b"application/json")], "content-type header"),
            ([("content-type", b"application/cloudevents+json")], "content-type header"),
        ],
    )
    def test_the_checker_finds_what_breaks_the_binding(
        self, headers: list[tuple[str, bytes]], why: str
    ) -> None:
        key, value = _value()
        assert why in (kafka_problem(headers, key, value) or "")

    def test_the_checker_finds_a_value_that_is_no_event(self) -> None:
        assert "SDK" in (kafka_problem(kafka_headers(), b"k", b'{"clean": 1}') or "")
