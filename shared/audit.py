"""The audit log: every read or write of patient data records who, what, when and from where,
in the same transaction as the read or the change.

The log is append-only in the database itself: triggers refuse UPDATE and DELETE of a row
(platform v1) and TRUNCATE of the table (each schema's audit migration; both pieces in
shared/migration_pieces.py), so no code path or bug can rewrite history; only a deliberate
DROP TRIGGER by the table's owner could. No API route writes to it other than by inserting.
"""

from __future__ import annotations

from opentelemetry import trace
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Principal
from shared.models import AuditEntry


def record_audit(
    session: AsyncSession,
    *,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    patient_id: str | None = None,
    client_ip: str | None = None,
    detail: str | None = None,
) -> AuditEntry:
    entry = audit_entry(
        principal=principal,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        client_ip=client_ip,
        detail=detail,
    )
    session.add(entry)
    return entry


def audit_entry(
    *,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    patient_id: str | None = None,
    client_ip: str | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """The entry `record_audit` adds, for a write path that inserts it in one statement with
    the change (shared.db.insert_rows), in the same transaction."""
    span = trace.get_current_span().get_span_context()
    return AuditEntry(
        actor=principal.identity,
        actor_org=principal.org,
        actor_roles=",".join(sorted(r.value for r in principal.roles)),
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        client_ip=client_ip,
        trace_id=format(span.trace_id, "032x") if span.is_valid else None,
        detail=detail,
    )
