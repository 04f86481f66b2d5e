"""What a CloudEvents consumer outside Waymark sees: messages and webhook requests parsed with
the official SDK (`cloudevents` 2.2.0), by its own mode detection, plus the binding's rules the
SDK does not enforce (the content type of structured mode).

`kafka_problem` and `http_problem` return None for a conforming message, else why not."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1.http import from_http as legacy_from_http
from cloudevents.v1.kafka import KafkaMessage as LegacyKafkaMessage
from cloudevents.v1.kafka import from_structured as legacy_from_structured

#: a test that writes a malformed message on purpose (poison for the DLQ tests) marks it with
#: this header, so the session-wide check knows it from a writer that breaks the binding
MALFORMED_ON_PURPOSE = "waymark-test-malformed"
REQUIRED = ("id", "source", "type", "specversion")


def _attributes(event: Any) -> dict[str, Any]:
    attrs = event.get_attributes() if hasattr(event, "get_attributes") else dict(event)
    missing = [a for a in REQUIRED if not attrs.get(a)]
    if missing:
        raise ValueError(f"missing {missing}")
    return attrs


def kafka_problem(
    headers: Iterable[tuple[str, bytes]] | None, key: bytes | None, value: bytes | None
) -> str | None:
    """Why a Kafka record is not a structured-mode CloudEvent a receiver can read, or None."""
    pairs = list(headers or ())
    names = [k for k, _ in pairs]
    ce = [k for k in names if k.lower().startswith("ce_")]
    types = [v for k, v in pairs if k.lower() == "content-type"]
    if types != [b"application/cloudevents+json; charset=UTF-8"]:
        return f"content-type header {types} (headers {names})"
    msg = ce_kafka.KafkaMessage(headers=dict(pairs), key=key, value=value or b"")
    try:
        attrs = _attributes(ce_kafka.from_kafka_event(msg))
        legacy = legacy_from_structured(LegacyKafkaMessage(dict(pairs), key, value or b""))
        if legacy["id"] != attrs["id"]:
            return "the SDK's two Kafka APIs disagree"
    except Exception as exc:  # noqa: BLE001 - any refusal by the SDK is the finding
        return f"SDK: {type(exc).__name__}: {exc}" + (f" (ce_* headers {ce})" if ce else "")
    return f"structured mode carries no ce_* header, found {ce}" if ce else None


def http_problem(headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a webhook request is not a structured-mode CloudEvent over HTTP, or None."""
    lower = {k.lower(): v for k, v in headers.items()}
    ctype = lower.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/cloudevents+json":
        return f"Content-Type {ctype!r}"
    if any(k.startswith("ce-") for k in lower):
        return f"structured mode carries no ce-* header: {sorted(lower)}"
    try:
        attrs = _attributes(ce_http.from_http_event(ce_http.HTTPMessage(lower, body)))
        legacy = legacy_from_http(lower, body)
        if legacy["id"] != attrs["id"]:
            return "the SDK's two HTTP APIs disagree"
    except Exception as exc:  # noqa: BLE001 - any refusal by the SDK is the finding
        return f"SDK: {type(exc).__name__}: {exc}"
    return None
