"""The Open Referral UK importer: each record of a feed page is validated on its own, then
upserted and published whole in its own savepoint; every invalid one is reported with its
reasons."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain
from services.directory.access import require_manage
from services.directory.domain import Lifecycle
from services.directory.events import service_published, service_updated
from services.directory.models import Organization
from services.directory.oruk import mapping
from services.directory.oruk.ids import map_ids
from services.directory.oruk.repository import TABLES, OrukRepository
from services.directory.oruk.schemas import (
    ODS_IDENTIFIER_TYPE,
    ImportRejection,
    ImportReport,
    OrukService,
)
from services.directory.records import (
    facts_of,
    load_record,
    publish_check,
    save_record,
    stage_event,
)
from services.directory.repository import DirectoryRepository
from shared.access import Capability, may_use, roles_phrase
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Forbidden, ValidationFailed, WaymarkError
from shared.settings import Settings

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _reasons(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors()[:20]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        out.append(f"{where}: {e.get('msg', '')}" if where else str(e.get("msg", "")))
    return out


@dataclass
class _Outcome:
    kind: str  # created | updated | unchanged


async def _import_one(
    *,
    session: AsyncSession,
    repo: DirectoryRepository,
    principal: Principal,
    record: OrukService,
    settings: Settings,
    client_ip: str | None,
) -> _Outcome:
    source_org = record.organization
    if source_org is None:
        raise ValidationFailed(
            "organization is required: Waymark needs the provider organisation and its ODS code"
        )
    code = source_org.ods_code()
    if (
        code is None
        or not domain.is_record_id(code)
        or len(code) > 20
        or not all(ch.isalnum() or ch == "-" for ch in code)
    ):
        raise ValidationFailed(
            "organization.organization_identifiers needs the provider's "
            f"ODS code (identifier_type {ODS_IDENTIFIER_TYPE!r}): letters, "
            "digits and '-', at most 20"
        )
    org = await repo.organization_by_code(code, for_update=True)
    require_manage(principal, org_code=code, org_ics=org.ics if org else principal.ics)
    if org is not None and org.id != source_org.id:
        raise ValidationFailed(
            f"organisation {code} is in the directory with id {org.id}, not {source_org.id}"
        )
    now = _now()
    identifiers = [
        i.model_dump(mode="json", exclude_none=True) for i in source_org.organization_identifiers
    ]
    if org is None:
        if await repo.organization(source_org.id) is not None:
            raise ValidationFailed(
                f"organization id {source_org.id} belongs to another organisation code"
            )
        org = Organization(
            id=source_org.id,
            org_code=code,
            ics=principal.ics,
            name=source_org.name,
            description=source_org.description,
            email=source_org.email,
            website=source_org.website,
            logo=source_org.logo,
            uri=source_org.uri,
            identifiers=identifiers,
            version=1,
            created_at=now,
            updated_at=now,
        )
        repo.add(org)
        await session.flush()
    else:
        values = dict(
            name=source_org.name,
            description=source_org.description,
            email=source_org.email,
            website=source_org.website,
            logo=source_org.logo,
            uri=source_org.uri,
            identifiers=identifiers,
        )
        if any(getattr(org, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(org, k, v)
            org.version += 1
            org.updated_at = now
    existing = await repo.service(record.id, for_update=True)
    if existing is not None and existing.organization_id != org.id:
        raise ValidationFailed(f"service {record.id} belongs to another organisation")
    facts = facts_of(record)
    domain.check_publishable(publish_check(record, facts))
    if record.status not in domain.SEARCHABLE_STATUSES and (
        existing is None or existing.lifecycle != Lifecycle.PUBLISHED
    ):
        raise ValidationFailed(
            f"a service whose status is {record.status.value!r} is not "
            "listed; only active or temporarily closed services import"
        )
    was_published = existing is not None and existing.lifecycle == Lifecycle.PUBLISHED
    if existing is not None and was_published:
        before = await load_record(repo, existing, with_organization=False)
        if mapping.fingerprint(before) == mapping.fingerprint(record):
            return _Outcome("unchanged")
    service = await save_record(
        repo=repo,
        record=record,
        org=org,
        principal=principal,
        existing=existing,
        lifecycle=Lifecycle.PUBLISHED,
    )
    if not was_published:
        service.published_at = now
        service.withdrawn_at = service.withdrawal_reason = service.withdrawal_note = None
    stage_event(
        session, settings, service_updated(service) if was_published else service_published(service)
    )
    record_audit(
        session,
        principal=principal,
        action="import",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
    )
    return _Outcome("created" if existing is None else "updated")


async def import_oruk(
    *,
    session: AsyncSession,
    principal: Principal,
    records: Sequence[Any],
    settings: Settings,
    client_ip: str | None = None,
) -> ImportReport:
    """Validate each record; upsert and publish the valid ones, each all-or-nothing in its
    own savepoint; report every invalid one with its reasons."""
    if not may_use(principal, Capability.DIRECTORY_MANAGE):
        raise Forbidden(
            f"importing into the directory needs one of the roles: "
            f"{roles_phrase(Capability.DIRECTORY_MANAGE)}"
        )
    repo = DirectoryRepository(session)
    report = ImportReport(received=len(records), created=[], updated=[], unchanged=[], rejected=[])
    seen: set[str] = set()
    # a Waymark ORUK export names slug records by their UUIDs: they import onto the slugs
    stored = OrukRepository(session)
    slugs = {kind: await stored.slug_ids(kind) for kind in TABLES}
    for index, raw in enumerate(records):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        shown_id = raw_id[:64] if isinstance(raw_id, str) else None
        try:
            record = OrukService.model_validate(
                map_ids(raw, "service", lambda kind, v: slugs.get(kind, {}).get(v, v))
            )
        except ValidationError as exc:
            report.rejected.append(ImportRejection(index=index, id=shown_id, reasons=_reasons(exc)))
            continue
        except WaymarkError as exc:  # domain checks run inside the model validators
            report.rejected.append(ImportRejection(index=index, id=shown_id, reasons=[exc.message]))
            continue
        if record.id in seen:
            report.rejected.append(
                ImportRejection(
                    index=index,
                    id=record.id,
                    reasons=["the same service appears twice in this import; send it once"],
                )
            )
            continue
        seen.add(record.id)
        try:
            async with session.begin_nested():
                outcome = await _import_one(
                    session=session,
                    repo=repo,
                    principal=principal,
                    record=record,
                    settings=settings,
                    client_ip=client_ip,
                )
        except WaymarkError as exc:
            session.expunge_all()  # nothing of the rolled-back record stays in memory
            report.rejected.append(
                ImportRejection(index=index, id=record.id, reasons=[exc.message])
            )
            continue
        except (IntegrityError, DBAPIError) as exc:
            session.expunge_all()
            logger.info(
                "import: record %s refused by the database: %s",
                record.id,
                exc.orig.__class__.__name__ if exc.orig else exc,
            )
            report.rejected.append(
                ImportRejection(
                    index=index,
                    id=record.id,
                    reasons=[
                        "the record conflicts with another record in the directory (an id "
                        "of one of its parts is already used elsewhere)"
                    ],
                )
            )
            continue
        getattr(report, outcome.kind).append(record.id)
    return report
