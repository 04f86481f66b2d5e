"""Dead letters: list what the consumers set aside on `<topic>.dlq`, and re-drive it to its
topic once the cause is fixed (`waymark dlq list|redrive`).

A dead letter is the original message (value, key and headers, byte for byte) plus the
consumer's `dlq.*` headers: the reason, the attempts, the consumer, and where it came from.

Re-driving publishes the original value and key again to the original topic. The value is
unchanged, so the event keeps its id: a consumer that had already applied it (several consumer
groups read one topic, and only one of them may have dead-lettered it) finds the id in its
inbox and skips it, and a journey workflow ignores an event id it has applied. The copy
carries `dlq.redriven.from` (`<dlq topic>:<partition>:<offset>`) and `dlq.redrive.count`.

What was re-driven is recorded on the DLQ itself: for each dead letter a marker record
(header `dlq.redrive.of`, `<partition>:<offset>` of the dead letter, written to the same DLQ
partition) is written in the same Kafka transaction as the copy, so either both exist or
neither does, and a second run republishes nothing. The tool's transactional id is one per
DLQ, so a second run started beside a first fences it off; the second run reads the DLQ only
after that, so it sees everything the first committed.

A message that still cannot be an event with the code the tool runs (oversized, not JSON, not
a CloudEvent, an unknown type or version, data not matching its type) is refused unless
forced: re-driving it could only dead-letter it again. Forced, it goes round once: the
consumer dead-letters it again (with `dlq.redrive.count` set), nothing re-drives it by itself,
so it never loops.

A re-driven event arrives after later events of the same patient; consumers already accept
events out of order (they are at-least-once, and state changes carry their time). The Kafka
transaction's commit marker takes an offset of its own after the copy, so a lag monitor shows
the partition one behind the end until the next event arrives; no message is waiting.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.events.binding import CE_HEADER_PREFIX, event_bytes, kafka_headers
from shared.events.parsing import PermanentError, parse_event
from shared.events.registry import load_all
from shared.kafka_security import client_options
from shared.settings import Settings

REASON = "dlq.reason"
ATTEMPTS = "dlq.attempts"
CONSUMER = "dlq.consumer"
ORIGINAL_TOPIC = "dlq.original.topic"
ORIGINAL_PARTITION = "dlq.original.partition"
ORIGINAL_OFFSET = "dlq.original.offset"
#: on a re-driven copy: the dead letter it came from, and how many re-drives it has been through
REDRIVEN_FROM = "dlq.redriven.from"
REDRIVE_COUNT = "dlq.redrive.count"
#: on a marker record in the DLQ: "<partition>:<offset>" of the dead letter it re-drove
REDRIVE_OF = "dlq.redrive.of"


def topics_for(settings: Settings, name: str) -> tuple[str, str]:
    """(topic, its DLQ) from a topic's name as the operator types it: with or without the
    instance's prefix, with or without `.dlq`."""
    name = name.removesuffix(".dlq")
    if not (settings.topic_prefix and name.startswith(settings.topic_prefix)):
        name = settings.topic(name)
    return name, f"{name}.dlq"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter on a DLQ, and whether it has been re-driven."""

    dlq: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    redriven_to: str | None = None  # "<topic>[<partition>]@<offset>" of the copy

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode(errors="replace") if found else None

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def consumer(self) -> str:
        return self.header(CONSUMER) or "?"

    @property
    def reason(self) -> str:
        return self.header(REASON) or "?"

    @property
    def attempts(self) -> int:
        return int(self.header(ATTEMPTS) or 0)

    @property
    def original(self) -> tuple[str, int, int]:
        return (
            self.header(ORIGINAL_TOPIC) or self.dlq.removesuffix(".dlq"),
            int(self.header(ORIGINAL_PARTITION) or -1),
            int(self.header(ORIGINAL_OFFSET) or -1),
        )

    @property
    def redrive_count(self) -> int:
        """How many re-drives the message had been through before it died this time."""
        return int(self.header(REDRIVE_COUNT) or 0)

    @property
    def event_id(self) -> str | None:
        try:
            raw = json.loads(self.value or b"")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        event_id = raw.get("id") if isinstance(raw, dict) else None
        return event_id if isinstance(event_id, str) else None

    def matches_consumer(self, settings: Settings, consumer: str | None) -> bool:
        return consumer is None or self.consumer in (consumer, settings.topic(consumer))


def parse_refs(refs: Iterable[str]) -> list[tuple[int | None, int]]:
    """`--offset` values: "<partition>:<offset>" or a bare offset (any partition)."""
    out: list[tuple[int | None, int]] = []
    for ref in refs:
        part, _, off = ref.rpartition(":")
        try:
            out.append((int(part) if part else None, int(off)))
        except ValueError:
            raise ValueError(f"{ref!r} is not an offset (N or PARTITION:N)") from None
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise LookupError(f"no topic {topic}")
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_all(
    settings: Settings, topic: str, timeout: float = 60, *, committed_only: bool = True
) -> list[ConsumerRecord]:
    """Every committed record of a topic (every record, aborted ones too, with
    `committed_only=False`), from the beginning to its end as it is now."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: could not read to its end in {timeout:.0f}s")
            for tp, recs in (await consumer.getmany(*pending, timeout_ms=500)).items():
                records.extend(r for r in recs if r.offset < end[tp])
            # a transaction's commit marker may be the partition's last offset: the position
            # moves past it without a record
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return records
    finally:
        await consumer.stop()


def dead_letters_of(dlq: str, records: list[ConsumerRecord]) -> list[DeadLetter]:
    """The dead letters among a DLQ's records, each with where its re-drive went (if any)."""
    redriven: dict[tuple[int, int], str] = {}
    letters: list[ConsumerRecord] = []
    for r in records:
        headers = dict(r.headers or ())
        if REDRIVE_OF in headers:
            p, _, o = headers[REDRIVE_OF].decode().partition(":")
            try:
                marker = json.loads(r.value or b"{}")
                # a CloudEvent (its data says where); markers before it held the dict itself
                to = marker.get("data", marker).get("to", "?")
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                to = "?"
            redriven[(int(p), int(o))] = to
        else:
            letters.append(r)
    return [
        DeadLetter(
            dlq=dlq,
            partition=r.partition,
            offset=r.offset,
            timestamp_ms=r.timestamp,
            key=r.key,
            value=r.value,
            headers=tuple(r.headers or ()),
            redriven_to=redriven.get((r.partition, r.offset)),
        )
        for r in sorted(letters, key=lambda r: (r.timestamp, r.partition, r.offset))
    ]


async def list_dead_letters(
    settings: Settings, topic: str, *, consumer: str | None = None
) -> list[DeadLetter]:
    """Every dead letter of a topic (optionally one consumer's), oldest first."""
    _, dlq = topics_for(settings, topic)
    letters = dead_letters_of(dlq, await read_all(settings, dlq))
    return [d for d in letters if d.matches_consumer(settings, consumer)]


@dataclass
class RedriveReport:
    topic: str
    dlq: str
    dry_run: bool
    #: dead letters re-driven (or, in a dry run, that would be), each with its copy's place
    redriven: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: dead letters asked for that had been re-driven before: nothing published for them
    already: list[DeadLetter] = field(default_factory=list)
    #: dead letters that still cannot be events: (letter, why); `force` publishes them anyway
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: asked-for offsets with no dead letter there
    not_found: list[str] = field(default_factory=list)

    @property
    def published(self) -> int:
        """Copies published: one per original message (several consumers may have
        dead-lettered the same message; one copy serves them all)."""
        return len({to for _, to in self.redriven})


def _select(
    settings: Settings,
    letters: list[DeadLetter],
    consumer: str | None,
    refs: list[tuple[int | None, int]] | None,
    report: RedriveReport,
) -> list[DeadLetter]:
    chosen = [d for d in letters if d.matches_consumer(settings, consumer)]
    if refs is not None:
        wanted: list[DeadLetter] = []
        for p, o in refs:
            hits = [d for d in chosen if d.offset == o and p in (None, d.partition)]
            if len(hits) > 1:
                raise ValueError(
                    f"offset {o} is in several partitions of {report.dlq} "
                    f"({', '.join(d.ref for d in hits)}): give PARTITION:OFFSET"
                )
            if not hits:
                report.not_found.append(f"{p}:{o}" if p is not None else str(o))
            wanted.extend(d for d in hits if d not in wanted)
        chosen = wanted
    report.already.extend(d for d in chosen if d.redriven_to is not None)
    return [d for d in chosen if d.redriven_to is None]


def _copy_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original's headers (trace context and the like), without the consumer's dlq.*
    ones, plus where this copy comes from; in the CloudEvents Kafka binding's structured mode
    (a letter written before the relay followed it may carry ce_* headers: they are dropped)."""
    kept = [
        (k, v)
        for k, v in letter.headers
        if not k.startswith("dlq.") and not k.lower().startswith(CE_HEADER_PREFIX)
    ]
    return kafka_headers(
        kept
        + [
            (REDRIVEN_FROM, f"{letter.dlq}:{letter.ref}".encode()),
            (REDRIVE_COUNT, str(letter.redrive_count + 1).encode()),
        ]
    )


def _marker(letter: DeadLetter, to: str) -> bytes:
    """The DLQ's record that a dead letter was re-driven: a CloudEvent like every message on
    every topic (its id a function of the letter, which is re-driven once ever)."""
    at = datetime.now(UTC)
    return event_bytes(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"waymark:{letter.dlq}:{letter.ref}")),
            "source": "waymark/dlq",
            "type": "uk.waymark.dlq.redriven",
            "subject": letter.ref,
            "time": at.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {"redriven": letter.ref, "to": to, "at_ms": int(at.timestamp() * 1000)},
        }
    )


async def redrive(
    settings: Settings,
    topic: str,
    *,
    consumer: str | None = None,
    offsets: list[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> RedriveReport:
    """Publish the dead letters of `topic` (optionally one consumer's, or only the given DLQ
    offsets) again to the topic they came from, each once ever."""
    load_all()
    target, dlq = topics_for(settings, topic)
    refs = parse_refs(offsets) if offsets else None
    report = RedriveReport(topic=target, dlq=dlq, dry_run=dry_run)
    producer = None
    if not dry_run:
        # started before the DLQ is read: starting fences off any earlier run with the same
        # transactional id, so every re-drive it committed is visible to the read below
        producer = AIOKafkaProducer(
            **client_options(settings),
            transactional_id=f"waymark-dlq-redrive.{dlq}",
            enable_idempotence=True,
            acks="all",
        )
        await producer.start()
    try:
        letters = dead_letters_of(dlq, await read_all(settings, dlq))
        chosen = _select(settings, letters, consumer, refs, report)
        # several consumers may have dead-lettered one message: it is published once
        by_original: dict[tuple[str, int, int], list[DeadLetter]] = {}
        for letter in chosen:
            by_original.setdefault(letter.original, []).append(letter)
        for (orig_topic, orig_partition, _), group in by_original.items():
            first = group[0]
            try:
                parse_event(first.value, max_bytes=settings.event_max_bytes)
            except PermanentError as exc:
                if not force:
                    report.refused.extend((d, str(exc)) for d in group)
                    continue
            if orig_topic != target:
                report.refused.extend((d, f"came from {orig_topic}, not {target}") for d in group)
                continue
            if producer is None:
                report.redriven.extend((d, f"{target} (dry run)") for d in group)
                continue
            async with producer.transaction():
                meta = await producer.send_and_wait(
                    target,
                    value=first.value,
                    key=first.key,
                    headers=_copy_headers(first),
                    # keyed: the key's partition, as any producer would choose; unkeyed: where
                    # it was
                    partition=None if first.key is not None else orig_partition,
                )
                to = f"{meta.topic}[{meta.partition}]@{meta.offset}"
                for d in group:
                    await producer.send_and_wait(
                        dlq,
                        value=_marker(d, to),
                        key=d.key,
                        partition=d.partition,
                        headers=kafka_headers([(REDRIVE_OF, d.ref.encode())]),
                    )
            report.redriven.extend((d, to) for d in group)
    finally:
        if producer is not None:
            await producer.stop()
    return report
