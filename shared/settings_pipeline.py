"""The event pipeline's settings: the outbox relay's producer (shared/outbox.py) and the
idempotent consumer (shared/consumer.py), a part of `shared.settings.Settings` kept in a module
of its own. Read with the same `WAYMARK_` prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # the most bytes the relay's producer puts in one partition's batch. Kafka's producer
    # default (16 KiB, ~25 events) made a relay batch of 200-500 rows wait for the broker's
    # answer to one full batch before the next could fill (one in flight per partition with
    # the idempotent producer); 512 KiB takes a whole relay batch per partition in one
    # request. Below the broker's 1 MiB message.max.bytes, which a batch must fit
    relay_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=1024 * 1024)
    # how long a relay woken by a commit waits before it claims the rows, so that the commits
    # right behind it join its batch: a relay woken by every commit of a busy writer (the HL7
    # v2 listener's group commits, one every few ms) published a handful of rows per
    # transaction and Kafka request, ~0.4 ms of relay CPU an event, and the broker ~0.2 ms
    # (issue #17; 0.02 s: 0.28 + 0.14 ms, 0.05 s: 0.21 + 0.10 ms). An event waits this much
    # longer when the relay was idle; a backlog is drained without waiting
    relay_linger_seconds: float = Field(default=0.05, ge=0, le=1)
    consumer_max_attempts: int = 5
    consumer_backoff_seconds: float = 0.2
    # records taken from Kafka at once, over all the member's partitions; each partition's
    # share is applied in one transaction with one inbox statement. 1000: a round of the
    # relay's batches (200 rows each) in one go, so a backlog costs a commit per partition per
    # thousand events, not per handful; small enough that a failing event (the run rolls back
    # and is taken one by one) and the transaction's locks stay short
    consumer_max_records: int = Field(default=1000, ge=1)
    # partitions a consumer applies at once, each in its own transaction on its own
    # connection; its process's pool holds as many, so no connection is opened and closed per
    # round (a pool smaller than the partitions in flight did that: connect, TLS, statements
    # prepared again). 4: commits overlap (each waits on the WAL flush, not the CPU) on the
    # two cores of a small server without the consumers crowding PostgreSQL's connections
    consumer_concurrency: int = Field(default=4, ge=1, le=32)
    # a message bigger than this is dead-lettered unread, before JSON decoding: an event
    # carries ids and codes (a few KiB at most), so a huge one is a bug or an attack, and
    # decoding it would cost every consumer of the topic memory and time. Below Kafka's own
    # 1 MiB message limit, so an oversized message still reaches the consumers and the DLQ.
    event_max_bytes: int = Field(default=256 * 1024, ge=1024)
