"""Reading a Kafka message as a Waymark event: every check a consumer makes before a handler
sees it, each failing as a PermanentError that says which (retrying cannot fix any of them,
so the message goes straight to the DLQ). Used by the consumer (shared/consumer.py) and by
`waymark dlq` (shared/dlq.py) to say why a dead letter is dead."""

from __future__ import annotations

import json

from pydantic import ValidationError

from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY, UnknownEventType


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the message goes straight to the DLQ."""


#: the start of every reason a message is not a Waymark event at all
NOT_AN_EVENT = "not a valid Waymark event"


def _describe(exc: ValidationError, limit: int = 5) -> str:
    """A validation error's fields and messages, without the values: a reason goes into the
    DLQ's headers and the log, and a bad message may hold what must not reach either."""
    errors = exc.errors(include_input=False, include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(whole value)'}: {e['msg']}"
        for e in errors[:limit]
    ]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def parse_event(value: bytes | None, *, max_bytes: int | None = None) -> CloudEvent:
    """Decode a Kafka value into a CloudEvent whose data matches its registered type.

    Every check that fails is a PermanentError whose reason says which one: oversized (checked
    before decoding, so a huge message costs no parsing), not JSON, not a CloudEvent, an
    unknown event type, an unknown schema version of a known type, or data that does not
    match its type's model."""
    if value is None:
        raise PermanentError("empty message (no value)")
    if max_bytes is not None and len(value) > max_bytes:
        raise PermanentError(f"oversized: {len(value)} bytes > limit {max_bytes}")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"not JSON: {exc}") from None
    try:
        event = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise PermanentError(f"{NOT_AN_EVENT}: not a CloudEvent: {_describe(exc)}") from None
    try:
        version = event.version
    except (ValueError, IndexError):
        raise PermanentError(
            f"{NOT_AN_EVENT}: its dataschema names no version (.../<type>.v<N>.json)"
        ) from None
    try:
        latest = REGISTRY.latest_version(event.type)
    except UnknownEventType as exc:
        raise PermanentError(f"{NOT_AN_EVENT}: {exc}") from None
    try:
        REGISTRY.model(event.type, version)
    except UnknownEventType:
        raise PermanentError(
            f"{NOT_AN_EVENT}: unknown schema version v{version} of "
            f"{event.type} (the newest known is v{latest})"
        ) from None
    try:
        REGISTRY.parse(event)  # validates data against the type's model, upcast to the newest
    except ValidationError as exc:
        raise PermanentError(
            f"{NOT_AN_EVENT}: data does not match {event.type} v{latest}: {_describe(exc)}"
        ) from None
    except (UnknownEventType, ValueError, LookupError, TypeError) as exc:
        # an upcaster that cannot take this data: a code fix, then a re-drive, mends it
        raise PermanentError(
            f"{NOT_AN_EVENT}: cannot upcast {event.type} v{version}: {type(exc).__name__}"
        ) from None
    return event
