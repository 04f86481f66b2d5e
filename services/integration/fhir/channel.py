"""FHIR resources applied through the integration service's one handler: each message (one
resource, one transaction Bundle, one batch entry, one Subscription notification) is one call
of `handlers.apply_message`, so it commits as one transaction, is idempotent by the source and
its control id (mapping.control_id), and leaves a dead letter when it cannot be applied."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration import handlers
from services.integration.domain import ContactReport, UnmappableReport
from services.integration.fhir import mapping
from services.integration.fhir.notifications import Notification
from services.integration.fhir.validation import FhirInvalid, Issue
from services.integration.models import DeadLetter, Encounter, SourceSystem
from shared.errors import Conflict
from shared.settings import Settings

CONTACTS = ("Encounter", "Appointment")
#: resources a Bundle may carry for a contact's sake: read for the patient's NHS number, the
#: organisation's ODS code and the diagnoses' codes, never kept
SUPPORTING = ("Patient", "Organization", "Condition")
#: where other resources belong
ELSEWHERE = {
    "ServiceRequest": "a referral (ServiceRequest) belongs at the referrals service's FHIR base "
    "(POST /fhir/ServiceRequest of the referrals API), not the integration service's",
    "Task": "a referral's Task belongs at the referrals service's FHIR base",
}


def elsewhere(kind: str) -> str:
    return ELSEWHERE.get(
        kind, f"Waymark's integration service takes Encounter and Appointment, not {kind}"
    )


@dataclass(frozen=True)
class Item:
    """A contact resource of a message, and the FHIRPath it is at (`Encounter`, or
    `Bundle.entry[2].resource`)."""

    path: str
    resource: Mapping[str, Any]


@dataclass
class Applied:
    """What a message did: its contacts as stored (as minimal Encounters), in its items' order,
    and whether each was created or changed by this message."""

    encounters: list[dict[str, Any]] = field(default_factory=list)
    changed: list[bool] = field(default_factory=list)
    duplicate: bool = False


def _at(path: str, exc: UnmappableReport) -> str:
    """The mapping's reason with its FHIRPath moved to where the resource is in the message."""
    text = str(exc)
    for root in CONTACTS:
        if text.startswith(root + ".") or text.startswith(root + ":"):
            return path + text[len(root) :]
    return text


def reports_of(items: Sequence[Item], ctx: mapping.Context):  # type: ignore[no-untyped-def]
    def reports(source: SourceSystem) -> list[ContactReport]:
        out = []
        for item in items:
            try:
                out.append(mapping.report(item.resource, source_org=source.org_code, ctx=ctx))
            except UnmappableReport as exc:
                raise UnmappableReport(_at(item.path, exc)) from None
        return out

    return reports


def _refusal(result: handlers.MessageResult) -> Exception:
    detail = result.detail or "refused"
    if result.ack_code == "AE":
        path, sep, reason = detail.partition(": ")
        issue = Issue(path, reason) if sep and path[:1].isupper() and " " not in path else None
        return FhirInvalid(f"the contact cannot be recorded: {detail}", [issue] if issue else [])
    return Conflict(detail)


async def apply(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    source: SourceSystem,
    control_id: str,
    payload: Mapping[str, Any],
    items: Sequence[Item],
    ctx: mapping.Context,
) -> Applied:
    """Apply one message; its contacts as stored, or FhirInvalid (422) / Conflict (409)."""
    result = await handlers.apply_message(
        sessions,
        settings,
        source_id=source.id,
        channel="fhir",
        control_id=control_id,
        payload=mapping.canonical(payload),
        reports=reports_of(items, ctx),
    )
    if result.ack_code != "AA":
        raise _refusal(result)
    changed = {encounter_id for encounter_id, _ in result.changed}
    applied = Applied(duplicate=result.duplicate)
    async with sessions() as session:
        for item in items:
            row = await _stored(session, source.id, mapping.resource_key(item.resource) or "")
            if row is None:  # pragma: no cover - applied above, in the same source
                raise Conflict("the contact was not stored")
            applied.encounters.append(rendered(row))
            applied.changed.append(str(row.id) in changed)
    return applied


async def _stored(session: AsyncSession, source_id: str, source_ref: str) -> Encounter | None:
    rows = await session.exec(  # type: ignore[call-overload]
        select(Encounter).where(
            Encounter.source_system == source_id,  # type: ignore[arg-type]
            Encounter.source_ref == source_ref,  # type: ignore[arg-type]
        )
    )
    return rows.scalars().first()  # type: ignore[no-any-return]


async def sent_by(session: AsyncSession, source_id: str, encounter_id: str) -> Encounter | None:
    """A contact this source reported (another source's is as absent as an unknown id)."""
    try:
        key = uuid.UUID(encounter_id)
    except ValueError:
        return None
    rows = await session.exec(  # type: ignore[call-overload]
        select(Encounter).where(
            Encounter.id == key,  # type: ignore[arg-type]
            Encounter.source_system == source_id,  # type: ignore[arg-type]
        )
    )
    return rows.scalars().first()  # type: ignore[no-any-return]


def rendered(row: Encounter) -> dict[str, Any]:
    return mapping.as_encounter(
        encounter_id=str(row.id),
        revision=row.revision,
        updated_at=row.updated_at,
        contact_kind=row.contact_kind,
        status=row.status,
        started_at=row.started_at,
        ended_at=row.ended_at,
        source_org=row.source_org,
    )


def location(encounter: Mapping[str, Any]) -> str:
    return f"Encounter/{encounter['id']}/_history/{encounter['meta']['versionId']}"


# --- what a message is -----------------------------------------------------------------------


def single(resource: Mapping[str, Any]) -> tuple[str, list[Item], mapping.Context]:
    """A POSTed Encounter or Appointment: its control id and its one item."""
    cid = mapping.control_id(resource)
    if cid is None:
        kind = resource.get("resourceType", "Encounter")
        raise FhirInvalid(
            f"the {kind} needs an identifier (or an id) naming the visit at the source",
            [Issue(f"{kind}.identifier", "an identifier of the visit is required")],
        )
    return cid, [Item(str(resource["resourceType"]), resource)], mapping.Context()


def entry_items(bundle: Mapping[str, Any], *, skip_first: bool = False) -> list[Item]:
    """The contact resources of a Bundle's entries; FhirInvalid naming each entry whose
    resource Waymark does not take."""
    items, problems = [], []
    for i, entry in enumerate(bundle.get("entry") or []):
        if skip_first and i == 0:
            continue
        resource = entry.get("resource") or {}
        kind = str(resource.get("resourceType", ""))
        path = f"Bundle.entry[{i}].resource"
        if kind in CONTACTS:
            if mapping.resource_key(resource) is None:
                problems.append(Issue(f"{path}.identifier", "an identifier (or an id) is needed"))
            items.append(Item(path, resource))
        elif kind not in SUPPORTING:
            problems.append(Issue(f"{path}.resourceType", elsewhere(kind)))
    if problems:
        raise FhirInvalid(problems[0].message, problems)
    return items


def transaction(bundle: Mapping[str, Any]) -> tuple[str, list[Item], mapping.Context]:
    items = entry_items(bundle)
    if not items:
        raise FhirInvalid(
            "the transaction holds no Encounter or Appointment",
            [Issue("Bundle.entry", "no Encounter or Appointment entry")],
        )
    key = mapping.resource_key(bundle) or "anonymous"
    cid = mapping.control_id(bundle, key=key)
    assert cid is not None
    return cid, items, mapping.Context(bundle.get("entry") or [])


def notified(
    bundle: Mapping[str, Any], note: Notification
) -> tuple[str, list[Item], mapping.Context]:
    """An event notification's focus resources, which must be in the Bundle (full-resource)."""
    ctx = mapping.Context(bundle.get("entry") or [])
    focuses = [focus for _, focus in note.events]
    if not focuses or any(f is None for f in focuses):
        raise FhirInvalid(
            "the notification names no focus resource: Waymark needs full-resource content",
            [Issue("Bundle.entry[0].resource.parameter", "notification-event.focus is missing")],
        )
    items = []
    for focus in focuses:
        resource = ctx.by_ref.get(str(focus)) or ctx.resolve({}, focus)
        if resource is None:
            raise FhirInvalid(
                f"the focus {focus} is not in the Bundle: the Subscription's payload content "
                "must be full-resource (Waymark does not read id-only notifications back)",
                [Issue("Bundle.entry", f"no entry holds the focus {focus}")],
            )
        kind = str(resource.get("resourceType"))
        if kind not in CONTACTS:
            raise FhirInvalid(
                elsewhere(kind), [Issue("Bundle.entry[0].resource.parameter", elsewhere(kind))]
            )
        index = next(
            i for i, e in enumerate(bundle.get("entry") or []) if e.get("resource") is resource
        )
        items.append(Item(f"Bundle.entry[{index}].resource", resource))
    key = f"{note.subscription}|{note.events_since_start or ''}"
    cid = mapping.control_id(bundle, key=key)
    assert cid is not None
    return cid, items, ctx


def message_of(payload: Mapping[str, Any]) -> tuple[str, list[Item], mapping.Context]:
    """The items of a message as it was stored (for a re-drive)."""
    from services.integration.fhir.notifications import notification

    if payload.get("resourceType") in CONTACTS:
        return single(payload)
    if payload.get("type") == "history":
        return notified(payload, notification(payload))
    return transaction(payload)


async def redrive(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, letter: DeadLetter
) -> handlers.MessageResult:
    """Apply a FHIR dead letter again, as it was received (after its cause was fixed)."""
    try:
        payload = json.loads(letter.payload)
        cid, items, ctx = message_of(payload)
    except (ValueError, FhirInvalid) as exc:
        return handlers.MessageResult(ack_code="AE", detail=str(exc))
    return await handlers.apply_message(
        sessions,
        settings,
        source_id=letter.source_system,
        channel="fhir",
        control_id=letter.control_id or cid,
        payload=letter.payload,
        reports=reports_of(items, ctx),
    )


handlers.REDRIVERS["fhir"] = redrive
