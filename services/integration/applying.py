"""Applying messages: the one path every channel's messages take (HL7 v2, FHIR, bulk), one
transaction for a batch of messages, each message all or nothing within it.

A batch costs a fixed handful of statements however many messages it holds: the senders, the
control ids' locks and log rows and the contacts are read in one query each, every decision is
made in memory (pure: services/integration/domain.py), and what changed is written in one
statement of column arrays (services/integration/staging.py, repository.write_batch). So a
listener that gathers what arrived while the previous batch committed
(services/integration/group_commit.py) pays for its commits, not for each message, and a
message is still acknowledged only after the commit that holds it.

A message's outcome does not depend on the batch it shares: messages are decided in order, each
seeing what the ones before it did (a resend of a control id within one batch is a duplicate;
two messages about one visit are two revisions), and a refused message leaves nothing but its
log row and dead letter.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from asyncpg import Connection

from services.integration import repository
from services.integration.domain import (
    SAME_CONTACT_MINUTES,
    ContactFacts,
    ContactReport,
    UnmappableReport,
    checked,
    merged,
    same_contact,
)
from services.integration.events import encounter_recorded
from services.integration.models import DeadLetter, EncounterAlias, SourceSystem
from services.integration.staging import Contact, Logged, Writes
from shared.access import Principal, Role
from shared.pseudonym import pseudonymiser
from shared.settings import Settings
from shared.topics import ENCOUNTERS

logger = logging.getLogger(__name__)

Channel = Literal["hl7v2", "fhir", "bulk"]
#: HL7 v2 acknowledgement codes (HL7 v2.5.1 table 0008), used by every channel's log:
#: AA accepted; AE an error in the message's content (fix it and resend); AR refused for
#: reasons outside its content (unknown sender, unsupported message, a reused control id)
AckCode = Literal["AA", "AE", "AR"]


class Refused(Exception):
    """The message is refused whatever its content (HL7 v2 AR): an unregistered or inactive
    sender, a message type Waymark does not take."""


@dataclass
class MessageResult:
    ack_code: AckCode
    detail: str | None = None
    duplicate: bool = False
    # (encounter id, revision) of every contact the message created or changed
    changed: list[tuple[str, int]] = field(default_factory=list)
    dead_letter_id: str | None = None


def digest(payload: str | bytes) -> str:
    raw = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha256(raw).hexdigest()


def source_principal(source: SourceSystem, settings: Settings) -> Principal:
    """A source system as the audit log names it."""
    return Principal(
        user=f"source:{source.id}",
        roles=frozenset({Role.PARTNER}),
        org=source.org_code,
        ics=settings.ics,
        name=source.name,
    )


NOT_REGISTERED = "the sending system is not registered with Waymark (or is switched off)"
NO_CONTROL_ID = "the message has no control id (HL7 v2 MSH-10)"


@dataclass
class Incoming:
    """One message to apply. The sender is named by its source id or, for HL7 v2, by the
    sending facility (MSH-4) it registered. `reports` turns the message into contacts for that
    source; raising UnmappableReport refuses it with AE, raising Refused with AR."""

    channel: Channel
    control_id: str | None
    payload: str
    reports: Callable[[SourceSystem], Sequence[ContactReport]]
    source_id: str | None = None
    sending_facility: str | None = None
    now: datetime | None = None


@dataclass
class _Batch:
    """What the batch knows, updated as each message is decided."""

    settings: Settings
    db: Connection  # the batch's transaction (repository.transaction or driver_of)
    by_id: dict[str, SourceSystem] = field(default_factory=dict)
    by_facility: dict[str, SourceSystem] = field(default_factory=dict)
    seen: dict[tuple[str, str], Logged] = field(default_factory=dict)
    contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)
    # contacts of the people this batch reports contacts for: what another source's new
    # report may turn out to be (services/integration/domain.py same_contact)
    by_patient: dict[str, list[Contact]] = field(default_factory=dict)
    refused_before: set[tuple[str, str]] = field(default_factory=set)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    writes: Writes = field(default_factory=Writes)
    letters: list[DeadLetter] = field(default_factory=list)
    aliases: list[EncounterAlias] = field(default_factory=list)
    principals: dict[str, Principal] = field(default_factory=dict)
    pseudonym: Callable[[str], str] | None = None

    def source(self, item: Incoming) -> SourceSystem | None:
        if item.source_id:
            return self.by_id.get(item.source_id)
        if item.sending_facility:
            return self.by_facility.get(item.sending_facility.upper())
        return None


async def apply_in(
    db: Connection, settings: Settings, items: Sequence[Incoming]
) -> list[MessageResult]:
    """Decide and write every message of a batch in the caller's transaction on `db` (the
    caller commits, and only then may any message be acknowledged)."""
    batch = _Batch(settings=settings, db=db)
    await _load_sources(batch, items)
    keys = sorted(
        {
            (src.id, item.control_id)
            for item in items
            if (src := batch.source(item)) is not None and item.control_id
        }
    )
    # planning reads nothing: the reports and the people they are about
    planned = [_plan(batch, item) for item in items]
    refs = sorted({ref for plan in planned for ref in plan.refs})
    if keys or refs:
        await _load_known(batch, keys, refs, items, planned)
    results = [_decide(batch, item, plan) for item, plan in zip(items, planned, strict=True)]
    if not batch.writes.empty():
        await repository.write_batch(db, batch.writes.params(settings.topic(ENCOUNTERS)))
    if batch.resolved:
        # the stored letters; this batch's own are closed or not as they are written
        await repository.close_dead_letters(db, batch.resolved, by="resent", at=datetime.now(UTC))
    if batch.letters:
        await repository.insert_dead_letters(db, batch.letters)
    if batch.aliases:
        # after the write: an alias may name a contact that statement created
        await repository.insert_aliases(db, batch.aliases)
    return results


#: a report's NHS number, facts and pseudonymous person, or why it cannot be a contact
_Person = tuple[str, ContactFacts, str] | UnmappableReport


@dataclass
class _Plan:
    now: datetime
    source: SourceSystem | None = None
    reports: Sequence[ContactReport] = ()
    # one per report, worked out once (the contacts' reads and the decision both need them)
    people: list[_Person] = field(default_factory=list)
    refusal: tuple[str, str] | None = None  # (ack code, reason) found before the database
    refs: list[tuple[str, str]] = field(default_factory=list)


def _plan(batch: _Batch, item: Incoming) -> _Plan:
    """Everything about a message that needs no contact read: its sender, its reports and the
    people they are about."""
    now = item.now or datetime.now(UTC)
    source = batch.source(item)
    if source is None or not source.active:
        return _Plan(now, refusal=("AR", NOT_REGISTERED))
    if not item.control_id:
        return _Plan(now, source=source, refusal=("AR", NO_CONTROL_ID))
    try:
        reports = list(item.reports(source))
    except UnmappableReport as exc:
        return _Plan(now, source=source, refusal=("AE", str(exc)))
    except Refused as exc:
        return _Plan(now, source=source, refusal=("AR", str(exc)))
    return _Plan(
        now,
        source=source,
        reports=reports,
        people=[_person(batch, report, now) for report in reports],
        refs=[(source.id, r.source_ref) for r in reports],
    )


def _person(batch: _Batch, report: ContactReport, now: datetime) -> _Person:
    try:
        nhs, facts = checked(report, now=now)
    except UnmappableReport as exc:
        return exc
    if batch.pseudonym is None:
        batch.pseudonym = pseudonymiser(batch.settings)
    return nhs, facts, batch.pseudonym(nhs)


def _decide(batch: _Batch, item: Incoming, plan: _Plan) -> MessageResult:
    now = plan.now
    fingerprint = digest(item.payload)
    source = plan.source
    if source is None:
        known = batch.source(item)  # registered but switched off: its refusals are its own
        return _dead(batch, item, known, "AR", NOT_REGISTERED, now)
    key = (source.id, item.control_id or "")
    seen = batch.seen.get(key) if item.control_id else None
    if seen is not None and seen.outcome == "accepted":
        if seen.digest == fingerprint:
            return MessageResult(ack_code="AA", duplicate=True)
        reason = f"control id {item.control_id} was used before for another message"
        return _dead(batch, item, source, "AR", reason, now, log=False)
    if plan.refusal is not None:
        return _dead(batch, item, source, *plan.refusal, now)
    try:
        staged = [
            _staged(batch, source, item, report, person)
            for report, person in zip(plan.reports, plan.people, strict=True)
        ]
    except UnmappableReport as exc:
        return _dead(batch, item, source, "AE", str(exc), now)
    changed = []
    for report, facts, patient_id, alias_of in staged:
        if alias_of is not None:
            batch.contacts[(source.id, report.source_ref)] = alias_of
            batch.aliases.append(
                EncounterAlias(
                    source_system=source.id, source_ref=report.source_ref, encounter_id=alias_of.id
                )
            )
        if facts is not None:
            changed.append(_write(batch, source, item, report, facts, patient_id, now))
    _log(batch, item, source, "accepted", "AA", None, fingerprint, now)
    if key in batch.refused_before:
        batch.refused_before.discard(key)
        _resolve_letters(batch, key, now)
    return MessageResult(ack_code="AA", changed=changed)


def _staged(
    batch: _Batch, source: SourceSystem, item: Incoming, report: ContactReport, person: _Person
) -> tuple[ContactReport, ContactFacts | None, str, Contact | None]:
    """A report checked against what is known (nothing written yet): the report, its facts
    when they change the contact, the person, and the contact another source reported first
    when this is that one. Raises UnmappableReport."""
    if isinstance(person, UnmappableReport):
        raise person
    _nhs, facts, patient_id = person
    row = batch.contacts.get((source.id, report.source_ref))
    if row is not None and row.patient_id != patient_id:
        # a visit number now names another person: a merge or a mistake at the source, which
        # a person must look at (never silently moved between journeys)
        raise UnmappableReport(
            f"visit {report.source_ref!r} was reported before for another NHS number"
        )
    alias_of = None
    if row is None:
        alias_of = next(
            (
                known
                for known in batch.by_patient.get(patient_id, [])
                if known.channel != item.channel and same_contact(known.facts(), facts)
            ),
            None,
        )
        row = alias_of
    return report, merged(row.facts() if row is not None else None, facts), patient_id, alias_of


def _write(
    batch: _Batch,
    source: SourceSystem,
    item: Incoming,
    report: ContactReport,
    facts: ContactFacts,
    patient_id: str,
    now: datetime,
) -> tuple[str, int]:
    row = batch.contacts.get((source.id, report.source_ref))
    if row is None:
        row = Contact(
            id=uuid.uuid4(),
            source_system=source.id,
            source_ref=report.source_ref,
            patient_id=patient_id,
            channel=item.channel,
        )
        batch.contacts[(source.id, report.source_ref)] = row
        batch.by_patient.setdefault(patient_id, []).append(row)
    row.apply(facts, now)
    # the contact's row, its event (an outbox row) and its audit entry, written with the batch
    batch.writes.contact(row, encounter_recorded(row))
    principal = batch.principals.get(source.id)
    if principal is None:
        principal = batch.principals[source.id] = source_principal(source, batch.settings)
    batch.writes.audit(principal, row, item.channel)
    return str(row.id), row.revision


def _dead(
    batch: _Batch,
    item: Incoming,
    source: SourceSystem | None,
    ack: str,
    reason: str,
    now: datetime,
    *,
    log: bool = True,
) -> MessageResult:
    letter = DeadLetter(
        id=uuid.uuid4(),
        source_system=source.id if source is not None else None,
        channel=item.channel,
        control_id=item.control_id,
        received_at=now,
        reason=reason,
        # PostgreSQL text holds no NUL; the rest is kept as received
        payload=item.payload.replace("\x00", "\\x00"),
    )
    batch.letters.append(letter)
    if log and source is not None and item.control_id:
        _log(batch, item, source, "refused", ack, reason, digest(item.payload), now)
    logger.info("refused a %s message (%s): %s", item.channel, ack, reason)
    return MessageResult(ack_code=ack, detail=reason, dead_letter_id=str(letter.id))  # type: ignore[arg-type]


def _log(
    batch: _Batch,
    item: Incoming,
    source: SourceSystem,
    outcome: str,
    ack: str,
    detail: str | None,
    fingerprint: str,
    now: datetime,
) -> None:
    key = (source.id, item.control_id or "")
    row = batch.seen.get(key)
    if row is None:
        row = batch.seen[key] = Logged(source_system=key[0], control_id=key[1])
    row.channel = item.channel
    row.outcome = outcome
    row.ack_code = ack
    row.detail = detail
    row.digest = fingerprint
    row.received_at = now
    batch.writes.log(row)


def _resolve_letters(batch: _Batch, key: tuple[str, str], now: datetime) -> None:
    """A message refused before and applied at last (resent by its sender, or re-driven): its
    open letters close, those stored (one UPDATE after the batch) and those of this batch."""
    batch.resolved.append(key)
    for letter in batch.letters:
        if (letter.source_system, letter.control_id) == key:
            letter.status, letter.resolved_at, letter.resolved_by = "redriven", now, "resent"


# --- the batch's reads ---------------------------------------------------------------------------


#: how long a process trusts what it read of a source (registrations change rarely; a source
#: switched off is refused everywhere within this many seconds). Sources not found are not
#: remembered, so a newly registered one is heard at once.
SOURCE_CACHE_SECONDS = 5.0
_sources: dict[tuple[str, str], tuple[SourceSystem, float]] = {}


async def _load_sources(batch: _Batch, items: Sequence[Incoming]) -> None:
    now = time.monotonic()
    ids, facilities = set(), set()
    for item in items:
        key = (
            ("id", item.source_id)
            if item.source_id
            else ("facility", (item.sending_facility or "").upper())
        )
        if not key[1]:
            continue
        hit = _sources.get(key)
        if hit is not None and hit[1] > now:
            _remember(batch, hit[0])
        elif key[0] == "id":
            ids.add(key[1])
        else:
            facilities.add(key[1])
    if not ids and not facilities:
        return
    for src in await repository.sources_named(batch.db, ids, facilities):
        # plain objects, in no session: the cache outlives this transaction
        until = now + SOURCE_CACHE_SECONDS
        _sources[("id", src.id)] = (src, until)
        if src.sending_facility:
            _sources[("facility", src.sending_facility.upper())] = (src, until)
        _remember(batch, src)


def _remember(batch: _Batch, src: SourceSystem) -> None:
    batch.by_id[src.id] = src
    if src.sending_facility:
        batch.by_facility[src.sending_facility.upper()] = src


async def _load_known(
    batch: _Batch,
    keys: list[tuple[str, str]],
    refs: list[tuple[str, str]],
    items: Sequence[Incoming],
    planned: list[_Plan],
) -> None:
    """In one statement (repository.known_locked): the batch's control ids locked and their
    message log rows; the contacts the batch's reports name, and those a report of a contact
    not yet known may be, reported through another channel (its person's, within
    SAME_CONTACT_MINUTES)."""
    reports = [
        (plan.source.id, report.source_ref, person[2], person[1].started_at)  # type: ignore[union-attr]
        for plan in planned
        for report, person in zip(plan.reports, plan.people, strict=True)
        # a refused report is refused when its message is decided
        if not isinstance(person, UnmappableReport)
    ]
    rows = await repository.known_locked(
        batch.db,
        keys,
        refs,
        reports,
        SAME_CONTACT_MINUTES,
        sorted({item.channel for item in items}),
    )
    known: dict[uuid.UUID, Contact] = {}
    for row in rows:
        if row["kind"] == "message":
            key = (row["ref_system"], row["ref"])
            batch.seen[key] = Logged(*key, outcome=row["outcome"], digest=row["digest"])
            if row["outcome"] == "refused":
                batch.refused_before.add(key)
            continue
        contact = known.get(row["id"])
        if contact is None:
            columns = {
                k: v
                for k, v in row.items()
                if k not in ("kind", "ref_system", "ref", "outcome", "digest")
            }
            contact = known[row["id"]] = Contact(**columns, stored=True)
        if row["ref_system"] is not None:
            batch.contacts[(row["ref_system"], row["ref"])] = contact
        else:
            batch.by_patient.setdefault(contact.patient_id, []).append(contact)
