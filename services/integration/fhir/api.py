"""The integration service's FHIR R4 routes (under /fhir; errors are OperationOutcomes): a FHIR
source POSTs Encounters and Appointments, transaction and batch Bundles of them, and the
notifications of its topic-based Subscriptions. Routes only: who may send, parse, apply
(services/integration/fhir/channel.py), render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from services.integration import repository
from services.integration.fhir import channel, mapping
from services.integration.fhir.notifications import notification
from services.integration.fhir.validation import (
    FhirInvalid,
    Issue,
    bundle_shell_problems,
    entry_problems,
    loads,
    parsed,
    summary,
)
from services.integration.models import SourceSystem
from shared.access import Capability, Principal, Relationship, may_use, permits
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.errors import Conflict, Forbidden, NotFound
from shared.fhir import FHIR_ERRORS, FHIR_JSON, fhir_response
from shared.fhir_rest import location
from shared.settings import Settings
from shared.web import SessionDep, client_ip

router = APIRouter()

_BODY = {
    "requestBody": {
        "required": True,
        "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    }
}
_ERRORS = {**FHIR_ERRORS, 400: {"description": "Not JSON", "content": {FHIR_JSON: {}}}}
_ERRORS[409] = {"description": "A control id reused", "content": {FHIR_JSON: {}}}


async def _source(session: Any, principal: Principal, settings: Settings) -> SourceSystem:
    """The registered FHIR source the caller is: the token's subject is its client id and the
    token's organisation its organisation (CONTACTS_SUBMIT: a partner, own organisation)."""
    if not may_use(principal, Capability.CONTACTS_SUBMIT) or principal.ics != settings.ics:
        raise Forbidden("sending contacts needs the partner role of a registered source system")
    source = await repository.source_by_client(session, principal.identity)
    if source is None or source.channel != "fhir" or not source.active:
        raise Forbidden("this client is not registered with Waymark as an active FHIR source")
    own = {Relationship.OWN_ORGANISATION} if principal.org == source.org_code else set()
    if not permits(principal, Capability.CONTACTS_SUBMIT, own):
        raise Forbidden("the token's organisation is not the organisation this source sends for")
    return source


async def _body(request: Request) -> Any:
    return loads(await request.body())


def _outcome(severity: str, code: str, text: str, path: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if path:
        issue["expression"] = [path]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _error_outcome(exc: Exception) -> tuple[str, dict[str, Any]]:
    if isinstance(exc, FhirInvalid):
        body = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "invalid",
                    "diagnostics": i.message,
                    "expression": [i.path],
                }
                for i in exc.issues[:20]
            ]
            or [{"severity": "error", "code": "invalid", "diagnostics": str(exc)}],
        }
        return "422 Unprocessable Entity", body
    return "409 Conflict", _outcome("error", "conflict", str(exc))


async def _create(request: Request, session: Any, principal: Principal, kind: str) -> Response:
    settings: Settings = request.app.state.settings
    source = await _source(session, principal, settings)
    raw = await _body(request)
    parsed(raw, kind)
    cid, items, ctx = channel.single(raw)
    applied = await channel.apply(
        request.app.state.sessions,
        settings,
        source=source,
        control_id=cid,
        payload=raw,
        items=items,
        ctx=ctx,
    )
    [encounter], [changed] = applied.encounters, applied.changed
    return fhir_response(
        encounter,
        201 if changed else 200,
        headers={
            "Location": location(request, encounter),
            "ETag": f'W/"{encounter["meta"]["versionId"]}"',
        },
    )


@router.post(
    "/fhir/Encounter", status_code=201, responses=_ERRORS, openapi_extra=_BODY, tags=["fhir"]
)
async def post_encounter(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """An R4 Encounter from a registered FHIR source: recorded as a contact (201), or the same
    again (200, nothing changed). The answer is the contact as Waymark holds it: a minimal
    Encounter with Waymark's id and version, never the patient."""
    return await _create(request, session, principal, "Encounter")


async def _read(
    request: Request, session: Any, principal: Principal, encounter_id: str, version: str | None
) -> Response:
    source = await _source(session, principal, request.app.state.settings)
    row = await channel.sent_by(session, source.id, encounter_id)
    if row is None:
        raise NotFound("this source sent no contact with that id")
    if version is not None and version != str(row.revision):
        raise NotFound(f"Waymark keeps the latest revision of a contact only ({row.revision})")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Encounter",
        resource_id=str(row.id),
        patient_id=row.patient_id,
        client_ip=client_ip(request),
        detail=f"fhir, by source {source.id}",
    )
    encounter = channel.rendered(row)
    return fhir_response(encounter, headers={"ETag": f'W/"{row.revision}"'})


@router.get("/fhir/Encounter/{encounter_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def read_encounter(
    encounter_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A contact this source sent, as Waymark holds it (the minimal Encounter of the answer to
    its POST). Another source's contact is a 404."""
    return await _read(request, session, principal, encounter_id, None)


@router.get(
    "/fhir/Encounter/{encounter_id}/_history/{version}", responses=FHIR_ERRORS, tags=["fhir"]
)
async def read_encounter_version(
    encounter_id: str,
    version: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """The Location of a POST's answer: the contact at that revision (the latest only)."""
    return await _read(request, session, principal, encounter_id, version)


@router.post(
    "/fhir/Appointment", status_code=201, responses=_ERRORS, openapi_extra=_BODY, tags=["fhir"]
)
async def post_appointment(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """An R4 Appointment from a registered FHIR source, recorded as a contact (answered as a
    minimal Encounter, as for POST /fhir/Encounter)."""
    return await _create(request, session, principal, "Appointment")


@router.post("/fhir", responses=_ERRORS, openapi_extra=_BODY, tags=["fhir"])
async def post_bundle(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A transaction Bundle (all its entries recorded, or none) or a batch Bundle (each entry on
    its own, each with its own outcome) of Encounters and Appointments."""
    settings: Settings = request.app.state.settings
    source = await _source(session, principal, settings)
    raw = await _body(request)
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        kind = raw.get("resourceType") if isinstance(raw, dict) else None
        raise FhirInvalid(
            "POST /fhir takes a transaction or batch Bundle",
            [Issue("Bundle", f"expected a Bundle, not {kind or 'something else'}")],
        )
    problems = bundle_shell_problems(raw)
    if raw.get("type") == "history":
        problems.append(
            Issue(
                "Bundle.type", "a Subscription notification goes to /fhir/subscription-notification"
            )
        )
    elif raw.get("type") not in ("transaction", "batch"):
        problems.append(
            Issue("Bundle.type", f"expected transaction or batch, not {raw.get('type')!r}")
        )
    if problems:
        raise FhirInvalid(f"not a transaction or batch Bundle: {summary(problems)}", problems)
    if not raw.get("entry"):
        raise FhirInvalid("the Bundle has no entries", [Issue("Bundle.entry", "no entries")])
    per_entry = entry_problems(raw)
    for i, entry in enumerate(raw["entry"]):
        method = (entry.get("request") or {}).get("method") if isinstance(entry, dict) else None
        if method and method not in ("POST", "PUT"):
            why = f"Waymark takes POST (or PUT) of Encounter and Appointment, not {method}"
            per_entry[i].append(Issue(f"Bundle.entry[{i}].request.method", why))
    if raw["type"] == "transaction":
        flat = [p for ps in per_entry for p in ps]
        if flat:
            raise FhirInvalid(f"the transaction is not valid: {summary(flat)}", flat)
        return await _transaction(request, source, raw)
    return await _batch(request, source, raw, per_entry)


async def _transaction(request: Request, source: SourceSystem, raw: dict[str, Any]) -> Response:
    cid, items, ctx = channel.transaction(raw)
    applied = await channel.apply(
        request.app.state.sessions,
        request.app.state.settings,
        source=source,
        control_id=cid,
        payload=raw,
        items=items,
        ctx=ctx,
    )
    by_path = {
        item.path: (e, c)
        for item, e, c in zip(items, applied.encounters, applied.changed, strict=True)
    }
    entries = []
    for i, _ in enumerate(raw["entry"]):
        found = by_path.get(f"Bundle.entry[{i}].resource")
        if found is None:  # a Patient, Organization or Condition the contacts refer to
            entries.append(
                {
                    "response": {
                        "status": "200 OK",
                        "outcome": _outcome(
                            "information",
                            "informational",
                            "read for the contacts' sake; Waymark keeps no such resource",
                        ),
                    }
                }
            )
            continue
        encounter, changed = found
        entries.append(_created(encounter, changed))
    return fhir_response(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    )


def _created(encounter: dict[str, Any], changed: bool) -> dict[str, Any]:
    return {
        "response": {
            "status": "201 Created" if changed else "200 OK",
            "location": channel.location(encounter),
            "etag": f'W/"{encounter["meta"]["versionId"]}"',
            "lastModified": encounter["meta"].get("lastUpdated"),
        }
    }


async def _batch(
    request: Request, source: SourceSystem, raw: dict[str, Any], per_entry: list[list[Issue]]
) -> Response:
    entries = []
    for i, entry in enumerate(raw["entry"]):
        path = f"Bundle.entry[{i}].resource"
        try:
            if per_entry[i]:
                raise FhirInvalid(summary(per_entry[i]), per_entry[i])
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind not in channel.CONTACTS:
                why = channel.elsewhere(kind)
                if kind in channel.SUPPORTING:
                    why = (
                        f"in a batch each entry stands alone: contain the {kind} in the "
                        "Encounter or Appointment, or send a transaction"
                    )
                raise FhirInvalid(why, [Issue(f"{path}.resourceType", why)])
            cid, _, ctx = channel.single(resource)
            applied = await channel.apply(
                request.app.state.sessions,
                request.app.state.settings,
                source=source,
                control_id=cid,
                payload=resource,
                items=[channel.Item(path, resource)],
                ctx=ctx,
            )
            entries.append(_created(applied.encounters[0], applied.changed[0]))
        except (FhirInvalid, Conflict) as exc:
            status, outcome = _error_outcome(exc)
            entries.append({"response": {"status": status, "outcome": outcome}})
    return fhir_response({"resourceType": "Bundle", "type": "batch-response", "entry": entries})


@router.post(
    "/fhir/subscription-notification", responses=_ERRORS, openapi_extra=_BODY, tags=["fhir"]
)
async def subscription_notification(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The endpoint of a topic-based Subscription (rest-hook): handshake and heartbeat are
    acknowledged; an event notification's Encounters and Appointments are recorded (its
    payload content must be full-resource)."""
    settings: Settings = request.app.state.settings
    source = await _source(session, principal, settings)
    raw = await _body(request)
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        raise FhirInvalid(
            "a Subscription notification is a history Bundle",
            [Issue("Bundle", "expected a Bundle")],
        )
    problems = bundle_shell_problems(raw) + [p for ps in entry_problems(raw) for p in ps]
    if problems:
        raise FhirInvalid(f"not a valid notification Bundle: {summary(problems)}", problems)
    note = notification(raw)
    if note.type in ("handshake", "heartbeat"):
        return fhir_response(_outcome("information", "informational", f"{note.type} received"))
    if note.type != "event-notification":
        raise FhirInvalid(
            f"a {note.type} Bundle answers a query; it is not a notification",
            [Issue("Bundle.entry[0].resource.parameter", f"type {note.type}")],
        )
    cid, items, ctx = channel.notified(raw, note)
    applied = await channel.apply(
        request.app.state.sessions,
        settings,
        source=source,
        control_id=cid,
        payload=raw,
        items=items,
        ctx=ctx,
    )
    said = ", ".join(channel.location(e) for e in applied.encounters)
    text = f"{len(items)} contact(s) recorded: {said}"
    if applied.duplicate:
        text = f"this notification was received before; nothing changed ({said})"
    return fhir_response(_outcome("information", "informational", text))


__all__ = ["router", "mapping"]
