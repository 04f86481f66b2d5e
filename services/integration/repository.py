"""Every query of the integration service."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from asyncpg import Connection, PostgresError, Record
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.models import DeadLetter, EncounterAlias, InboundMessage, SourceSystem


async def source_by_id(session: AsyncSession, source_id: str) -> SourceSystem | None:
    return await session.get(SourceSystem, source_id)


async def source_by_client(session: AsyncSession, client_id: str) -> SourceSystem | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(SourceSystem).where(SourceSystem.client_id == client_id)
    )
    return rows.first()  # type: ignore[no-any-return]


async def sources(session: AsyncSession) -> list[SourceSystem]:
    rows = await session.exec(select(SourceSystem).order_by(SourceSystem.id))  # type: ignore[call-overload]
    return list(rows.all())


async def message(
    session: AsyncSession, source_id: str, control_id: str, *, lock: bool = False
) -> InboundMessage | None:
    q = select(InboundMessage).where(
        InboundMessage.source_system == source_id, InboundMessage.control_id == control_id
    )
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.first()  # type: ignore[no-any-return]


async def open_dead_letters(
    session: AsyncSession, *, limit: int, source_id: str | None = None
) -> list[DeadLetter]:
    q = select(DeadLetter).where(DeadLetter.status == "open")
    if source_id is not None:
        q = q.where(DeadLetter.source_system == source_id)
    rows = await session.exec(q.order_by(DeadLetter.received_at).limit(limit))  # type: ignore[call-overload]
    return list(rows.all())


async def dead_letter(
    session: AsyncSession, letter_id: uuid.UUID, *, lock: bool = False
) -> DeadLetter | None:
    q = select(DeadLetter).where(DeadLetter.id == letter_id)
    rows = await session.exec(q.with_for_update() if lock else q)  # type: ignore[call-overload]
    return rows.first()  # type: ignore[no-any-return]


async def status_by_source(session: AsyncSession) -> list[dict[str, Any]]:
    """Per registered source: messages received, accepted, refused, and when last seen."""
    rows = await session.exec(  # type: ignore[call-overload]
        text(
            """SELECT s.id, s.name, s.org_code, s.channel, s.active,
                      count(m.control_id) AS received,
                      count(m.control_id) FILTER (WHERE m.outcome = 'accepted') AS accepted,
                      count(m.control_id) FILTER (WHERE m.outcome = 'refused') AS refused,
                      max(m.received_at) AS last_seen,
                      (SELECT count(*) FROM dead_letter d
                        WHERE d.source_system = s.id AND d.status = 'open') AS dead_letters
                 FROM source_system s LEFT JOIN inbound_message m ON m.source_system = s.id
                GROUP BY s.id ORDER BY s.id"""
        )
    )
    return [dict(r._mapping) for r in rows]


async def unknown_sender_letters(session: AsyncSession) -> int:
    rows = await session.exec(  # type: ignore[call-overload]
        text("SELECT count(*) FROM dead_letter WHERE source_system IS NULL AND status = 'open'")
    )
    return int(rows.scalar_one())


# --- a batch of messages (services/integration/applying.py): one query each --------------------


class _Statement:
    """A statement of the batch path, run on the driver's connection (asyncpg) in the batch's
    transaction: ~30 us of CPU each against ~100 us through SQLAlchemy's execution layer, and a
    batch runs several for a handful of messages (issue #17's profile). Written with named
    parameters (`:name`), sent with asyncpg's positional ones."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def positional(match: re.Match[str]) -> str:
            if match.group(1) not in self.names:
                self.names.append(match.group(1))
            return f"${self.names.index(match.group(1)) + 1}"

        self.sql = re.sub(r"(?<![:\w]):([a-z_]+)", positional, sql)

    async def fetch(self, db: Connection, params: dict[str, Any]) -> list[Record]:
        if not db.is_in_transaction():
            raise RuntimeError("a batch statement outside the batch's transaction")
        return list(await db.fetch(self.sql, *(params[name] for name in self.names)))


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Connection]:
    """A batch's transaction on a pooled connection's driver (asyncpg), without an ORM session:
    a session's begin, connection, flush and commit were ~14% of the listener's CPU (issue #17's
    profile). Committed when the block ends, rolled back on an exception. A connection that
    failed other than by a PostgreSQL error (lost, cancelled mid-statement) is discarded, not
    pooled again; when it was lost (the database restarting, say), the pool starts afresh, as
    SQLAlchemy does on a disconnect, so one batch fails rather than one per pooled connection."""
    engine = sessions.kw["bind"]
    raw = await engine.raw_connection()
    db: Connection = raw.driver_connection
    try:
        async with db.transaction():
            yield db
    except BaseException as exc:
        if isinstance(exc, PostgresError) and not db.is_closed():
            raise  # the statement's own error: rolled back, the connection is sound
        raw.invalidate()
        if db.is_closed():
            await engine.dispose()
        raise
    finally:
        raw.close()


async def driver_of(session: AsyncSession) -> Connection:
    """The session's connection's driver, in the session's transaction (begun here if it has
    not been: the dialect begins at its first statement), for a batch applied within a unit
    of work that writes through the ORM too (the importer's progress)."""
    conn = await session.connection()
    await conn.exec_driver_sql("SELECT 1")
    driver: Connection = (await conn.get_raw_connection()).driver_connection
    return driver


async def sources_named(db: Connection, ids: set[str], facilities: set[str]) -> list[SourceSystem]:
    """The sources with these ids, or these sending facilities (MSH-4, any case)."""
    rows = await db.fetch(
        """SELECT * FROM source_system
            WHERE id = ANY($1::text[]) OR upper(sending_facility) = ANY($2::text[])""",
        sorted(ids),
        sorted(facilities),
    )
    return [SourceSystem(**dict(row)) for row in rows]


CONTACT_COLUMNS = (
    "id, source_system, source_ref, patient_id, revision, contact_kind, planned, status, "
    "started_at, ended_at, source_org, chief_complaint, diagnosis_codes, attendance_category, "
    "discharge_destination, channel"
)
#: what a batch must know before it decides, in one statement. First (an Append runs its
#: branches in order, so the advisory locks come before any row lock, as always) its control
#: ids, locked (migration 0004 lock_messages: a delivery waits for any other delivery of its
#: control id still being applied, then sees what that one committed), with their message log
#: rows (`kind` 'message': ref_system, ref = the key, outcome, digest). Then the contacts its
#: reports may be, locked in one order (by id): those its (source, source id) pairs name, as
#: first reported or as another source's alias (with the pair that found them), and, for each
#: report of a contact known by neither, the person's contacts starting within `window`
#: minutes of it that came through another channel than all of the batch's messages (ref
#: NULL: what that report may be, services/integration/domain.py same_contact; within one
#: channel a source's own ids tell contacts apart, so a frequent attender's earlier contacts
#: through the same door are neither read nor locked). The contacts branch reads with the
#: statement's snapshot, taken before any wait on a lock: the message that waited is then a
#: duplicate or a refusal and uses no contact, and what other messages of the batch race with
#: is what they raced with before (a contact created twice fails on its unique key, and the
#: batch is applied again a message at a time: group_commit.py).
_KNOWN_LOCKED = _Statement(
    f"""WITH messages AS MATERIALIZED (
            SELECT l.m_system, l.m_control, l.m_outcome, l.m_digest
              FROM lock_messages(CAST(:m_systems AS text[]), CAST(:m_controls AS text[])) AS l),
        wanted AS (
            SELECT r.source_system AS ref_system, r.source_ref AS ref, e.id
              FROM unnest(CAST(:systems AS text[]), CAST(:refs AS text[]))
                   AS r (source_system, source_ref)
              JOIN encounter e USING (source_system, source_ref)
            UNION ALL
            SELECT r.source_system, r.source_ref, a.encounter_id
              FROM unnest(CAST(:systems AS text[]), CAST(:refs AS text[]))
                   AS r (source_system, source_ref)
              JOIN encounter_alias a USING (source_system, source_ref)
            UNION ALL
            SELECT NULL, NULL, e.id
              FROM unnest(CAST(:new_systems AS text[]), CAST(:new_refs AS text[]),
                          CAST(:new_people AS text[]), CAST(:new_starts AS timestamptz[]))
                   AS n (source_system, source_ref, patient_id, started_at)
              JOIN encounter e ON e.patient_id = n.patient_id
                   AND e.started_at BETWEEN n.started_at - make_interval(mins => :window)
                                        AND n.started_at + make_interval(mins => :window)
             WHERE NOT e.channel = ALL(CAST(:channels AS text[]))
               AND NOT EXISTS (SELECT FROM encounter k
                                WHERE k.source_system = n.source_system
                                  AND k.source_ref = n.source_ref)
               AND NOT EXISTS (SELECT FROM encounter_alias k
                                WHERE k.source_system = n.source_system
                                  AND k.source_ref = n.source_ref)),
        contacts AS MATERIALIZED (
            SELECT 'contact' AS kind, w.ref_system, w.ref, NULL AS outcome, NULL AS digest,
                   {", ".join(f"e.{c}" for c in CONTACT_COLUMNS.split(", "))}
              FROM wanted w JOIN encounter e ON e.id = w.id
             ORDER BY e.id
               FOR UPDATE OF e)
        SELECT 'message' AS kind, m_system AS ref_system, m_control AS ref, m_outcome AS outcome,
               m_digest AS digest, {", ".join(f"NULL AS {c}" for c in CONTACT_COLUMNS.split(", "))}
          FROM messages
        UNION ALL
        SELECT * FROM contacts"""
)


async def known_locked(
    db: Connection,
    keys: list[tuple[str, str]],
    refs: list[tuple[str, str]],
    reports: list[tuple[str, str, str, datetime]],
    window: int,
    channels: list[str],
) -> list[Record]:
    """The batch's first statement: `keys` (source, control id)
    locked, their message log rows (`kind` 'message': ref_system, ref, outcome, digest); then
    (`kind` 'contact') the contacts these (source, source id) pairs name (`ref_system`, `ref`
    set), and for each of `reports` (source, source id, person, start) whose pair names no
    contact yet, the person's contacts starting within `window` minutes of it through a channel
    other than all of `channels` (`ref_system` NULL); locked. A contact found several ways
    comes once each way. Contact columns: CONTACT_COLUMNS."""
    params = {
        "m_systems": [k[0] for k in keys],
        "m_controls": [k[1] for k in keys],
        "systems": [r[0] for r in refs],
        "refs": [r[1] for r in refs],
        "new_systems": [r[0] for r in reports],
        "new_refs": [r[1] for r in reports],
        "new_people": [r[2] for r in reports],
        "new_starts": [r[3] for r in reports],
        "window": window,
        "channels": channels,
    }
    return await _KNOWN_LOCKED.fetch(db, params)


#: a batch's writes in one statement (services/integration/staging.py): new contacts inserted
#: and changed ones updated, the message log upserted (a control id refused before and sent
#: again is its row's second outcome), the contacts' events in the outbox in the order they
#: happened (seq is their order on the topic) and an audit entry per contact recorded.
#: Column arrays, so one statement text whatever the batch holds (asyncpg prepares it once per
#: connection); a contact's diagnosis codes travel as a JSON array (arrays of arrays do not
#: unnest row by row).
_WRITE_BATCH = _Statement(
    """WITH contacts AS (
            SELECT * FROM unnest(
                CAST(:c_stored AS boolean[]), CAST(:c_id AS uuid[]),
                CAST(:c_source_system AS text[]), CAST(:c_source_ref AS text[]),
                CAST(:c_patient_id AS text[]), CAST(:c_revision AS integer[]),
                CAST(:c_contact_kind AS text[]), CAST(:c_planned AS boolean[]),
                CAST(:c_status AS text[]), CAST(:c_started_at AS timestamptz[]),
                CAST(:c_ended_at AS timestamptz[]), CAST(:c_source_org AS text[]),
                CAST(:c_chief_complaint AS text[]), CAST(:c_diagnosis_codes AS jsonb[]),
                CAST(:c_attendance_category AS text[]),
                CAST(:c_discharge_destination AS text[]), CAST(:c_channel AS text[]),
                CAST(:c_updated_at AS timestamptz[]))
            AS c (stored, id, source_system, source_ref, patient_id, revision, contact_kind,
                  planned, status, started_at, ended_at, source_org, chief_complaint,
                  diagnosis_codes, attendance_category, discharge_destination, channel,
                  updated_at)),
        new_contacts AS (
            INSERT INTO encounter (id, source_system, source_ref, patient_id, revision,
                                   contact_kind, planned, status, started_at, ended_at,
                                   source_org, chief_complaint, diagnosis_codes,
                                   attendance_category, discharge_destination, channel,
                                   updated_at)
            SELECT id, source_system, source_ref, patient_id, revision, contact_kind, planned,
                   status, started_at, ended_at, source_org, chief_complaint,
                   ARRAY(SELECT jsonb_array_elements_text(diagnosis_codes)),
                   attendance_category, discharge_destination, channel, updated_at
              FROM contacts WHERE NOT stored),
        changed_contacts AS (
            UPDATE encounter e
               SET revision = c.revision, contact_kind = c.contact_kind, planned = c.planned,
                   status = c.status, started_at = c.started_at, ended_at = c.ended_at,
                   source_org = c.source_org, chief_complaint = c.chief_complaint,
                   diagnosis_codes = ARRAY(SELECT jsonb_array_elements_text(c.diagnosis_codes)),
                   attendance_category = c.attendance_category,
                   discharge_destination = c.discharge_destination, updated_at = c.updated_at
              FROM contacts c WHERE c.stored AND e.id = c.id),
        logged AS (
            INSERT INTO inbound_message (source_system, control_id, channel, received_at,
                                         outcome, ack_code, detail, digest)
            SELECT * FROM unnest(
                CAST(:m_source_system AS text[]), CAST(:m_control_id AS text[]),
                CAST(:m_channel AS text[]), CAST(:m_received_at AS timestamptz[]),
                CAST(:m_outcome AS text[]), CAST(:m_ack_code AS text[]),
                CAST(:m_detail AS text[]), CAST(:m_digest AS text[]))
                ON CONFLICT (source_system, control_id) DO UPDATE
               SET channel = EXCLUDED.channel, received_at = EXCLUDED.received_at,
                   outcome = EXCLUDED.outcome, ack_code = EXCLUDED.ack_code,
                   detail = EXCLUDED.detail, digest = EXCLUDED.digest),
        events AS (
            INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent)
            SELECT o.event_id, CAST(:topic AS text), o.key, o.event_type,
                   CAST(o.payload AS jsonb), CAST(:traceparent AS text)
              FROM unnest(CAST(:o_event_id AS text[]), CAST(:o_key AS text[]),
                          CAST(:o_event_type AS text[]), CAST(:o_payload AS text[]))
                   WITH ORDINALITY AS o (event_id, key, event_type, payload, n)
             ORDER BY o.n)
        INSERT INTO audit_log (id, actor, actor_org, actor_roles, action, resource_type,
                               resource_id, patient_id, trace_id, detail)
        SELECT gen_random_uuid(), a.actor, a.actor_org, a.actor_roles, 'contact-recorded',
               'Encounter', a.resource_id, a.patient_id, CAST(:trace_id AS text), a.detail
          FROM unnest(CAST(:a_actor AS text[]), CAST(:a_actor_org AS text[]),
                      CAST(:a_actor_roles AS text[]), CAST(:a_resource_id AS text[]),
                      CAST(:a_patient_id AS text[]), CAST(:a_detail AS text[]))
               AS a (actor, actor_org, actor_roles, resource_id, patient_id, detail)"""
)


async def write_batch(db: Connection, params: dict[str, Any]) -> None:
    """A batch's contacts, message log, events and audit entries (staging.Writes.params), in
    the batch's transaction."""
    await _WRITE_BATCH.fetch(db, params)


async def close_dead_letters(
    db: Connection, keys: list[tuple[str, str]], *, by: str, at: datetime
) -> None:
    """Messages applied at last (resent by their senders or re-driven): their stored open
    letters close (a batch's own letters are written after this, already closed or not)."""
    await db.execute(
        """UPDATE dead_letter SET status = 'redriven', resolved_at = $3, resolved_by = $4
            WHERE (source_system, control_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              AND status = 'open'""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        at,
        by,
    )


async def insert_dead_letters(db: Connection, letters: list[DeadLetter]) -> None:
    await db.executemany(
        """INSERT INTO dead_letter (id, source_system, channel, control_id, received_at, reason,
                                    payload, status, attempts, resolved_at, resolved_by)
           VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7, $8, $9, $10, $11)""",
        [
            (
                x.id,
                x.source_system,
                x.channel,
                x.control_id,
                x.received_at,
                x.reason,
                x.payload,
                x.status,
                x.attempts,
                x.resolved_at,
                x.resolved_by,
            )
            for x in letters
        ],
    )


async def insert_aliases(db: Connection, aliases: list[EncounterAlias]) -> None:
    """Other sources' ids of contacts (after the batch's write: an alias may name a contact
    that statement created)."""
    await db.executemany(
        """INSERT INTO encounter_alias (source_system, source_ref, encounter_id)
           VALUES ($1, $2, $3)""",
        [(a.source_system, a.source_ref, a.encounter_id) for a in aliases],
    )
