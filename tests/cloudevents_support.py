"""What a CloudEvents consumer outside Waymark sees: messages and webhook requests parsed with
the official SDK (`cloudevents` 2.2.0), by its own mode detection, plus the binding's rules the
SDK does not enforce (the content type of structured mode).

`kafka_problem` and `http_problem` return None for a conforming message, else why not."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1.http import from_http as legacy_from_http
from cloudevents.v1.kafka import KafkaMessage as LegacyKafkaMessage
from cloudevents.v1.kafka import from_structured as legacy_from_structured

from shared.kafka_security import client_options
from shared.settings import Settings

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


@dataclass
class Findings:
    """What a read of topics found: records read, malformed on purpose, not CloudEvents, and
    each (source, id) with the contents seen under it."""

    read: Counter[str] = field(default_factory=Counter)
    on_purpose: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: (source, id) -> the distinct contents seen under it, and where
    contents: dict[tuple[str, str], dict[str, str]] = field(
        default_factory=lambda: defaultdict(dict)
    )


async def read_since(s: Settings, topic: str, since_ms: int, found: Findings) -> None:
    """Every record of `topic` from `since_ms` to the topic's end as it is now."""
    consumer = AIOKafkaConsumer(
        **client_options(s),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        pending = set()
        for tp in tps:
            at = starts.get(tp)
            if at is not None and at.offset < ends[tp]:
                consumer.seek(tp, at.offset)
                pending.add(tp)
        deadline = time.monotonic() + 300
        while pending:
            assert time.monotonic() < deadline, f"{topic}: not read to its end in 300 s"
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        check(r, found)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


def check(r: ConsumerRecord, found: Findings) -> None:  # type: ignore[type-arg]
    where = f"{r.topic}[{r.partition}]@{r.offset}"
    found.read[r.topic] += 1
    if any(k == MALFORMED_ON_PURPOSE for k, _ in r.headers or ()):
        found.on_purpose[r.topic] += 1
        return
    problem = kafka_problem(r.headers, r.key, r.value)
    if problem:
        found.problems[r.topic].append(f"{where}: {problem}")
        return
    event = json.loads(r.value)
    content = json.dumps(event, sort_keys=True)
    found.contents[(event["source"], event["id"])].setdefault(content, where)


def reused_ids(found: Findings) -> dict[tuple[str, str], list[str]]:
    """(source, id) pairs seen with more than one content, and where."""
    return {k: sorted(v.values())[:3] for k, v in found.contents.items() if len(v) > 1}
