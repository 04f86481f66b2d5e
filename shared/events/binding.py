"""How a Waymark event travels: the CloudEvents protocol bindings we follow, one content mode
each, exactly.

- Kafka (CloudEvents Kafka Protocol Binding 1.0), **structured mode**: the value is the whole
  event as JSON, the `content-type` header says `application/cloudevents+json;
  charset=UTF-8`, and no header starts with `ce_` (a receiver takes any `ce_` header for
  binary mode and then looks for every attribute in headers). The key is the event's subject.
  Other headers (`traceparent`, the DLQ's `dlq.*`) are not CloudEvents attributes and are
  allowed by the binding.
- HTTP (webhooks; CloudEvents HTTP Protocol Binding 1.0), **structured mode**: the body is the
  event as JSON, sent with `Content-Type: application/cloudevents+json; charset=utf-8`.

Every writer of Kafka messages (the outbox relay, the DLQ re-drive, the synthetic journeys'
publisher) takes its headers from here, so there is one binding to follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

#: the structured-mode media type (the JSON event format)
STRUCTURED = "application/cloudevents+json"
KAFKA_CONTENT_TYPE = f"{STRUCTURED}; charset=UTF-8"
HTTP_CONTENT_TYPE = f"{STRUCTURED}; charset=utf-8"
#: the binding's prefix for attribute headers: never written in structured mode
CE_HEADER_PREFIX = "ce_"


def kafka_headers(extra: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """The headers of a structured-mode Kafka message: `extra` (trace context and the like)
    and the content type. An attribute header (`ce_*`) is refused: it would turn the message
    into a binary-mode one for every receiver."""
    kept = [(k, v) for k, v in extra if k.lower() != "content-type"]
    wrong = [k for k, _ in kept if k.lower().startswith(CE_HEADER_PREFIX)]
    if wrong:
        raise ValueError(f"structured mode carries no {CE_HEADER_PREFIX}* header: {wrong}")
    return [*kept, ("content-type", KAFKA_CONTENT_TYPE.encode())]


def event_bytes(payload: dict[str, Any]) -> bytes:
    """An event as a message's value: compact UTF-8 JSON with sorted keys, so one event is the
    same bytes every time it is written. orjson: a tenth of the standard library's time (the
    relay encodes every event it publishes; issue #20). Its bytes equal `json.dumps(payload,
    separators=(",", ":"), sort_keys=True)` for ASCII text; other text is UTF-8 rather than
    \\u escapes, the same JSON value."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
