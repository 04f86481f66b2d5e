"""Use cases of partner onboarding: one per command, in the request's transaction (the session
commits when the route returns). Every change is audited with it.

An administrator sees and manages only its own organisation's clients: another
organisation's client is "not found", never "forbidden", so its existence is not revealed.
The provider is called before the row is written; if writing the row then fails, the client
just registered at the provider is deleted again (best effort, logged).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.clients import domain, provider, repository, sealing
from services.notifications.clients.domain import Registration, Status
from services.notifications.clients.schemas import ClientCreate
from services.notifications.models import PartnerClient
from shared import oidc
from shared.access import Capability, may_use, organisation_relationships, permits, roles_phrase
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, NotFound
from shared.oidc import IssuerUnavailable
from shared.settings import Settings

logger = logging.getLogger(__name__)

CLIENT = "PartnerClient"
MAX_ACTIVE_PER_ORG = 50


@dataclass(frozen=True)
class WithSecret:
    """A client and the secret the provider just issued: shown once, never stored."""

    client: PartnerClient
    secret: str
    token_endpoint: str


def _now() -> datetime:
    return datetime.now(UTC)


def check_may_manage(principal: Principal) -> None:
    if not may_use(principal, Capability.CLIENTS_MANAGE):
        raise Forbidden(
            "partner systems' clients are managed by an organisation's own "
            f"{roles_phrase(Capability.CLIENTS_MANAGE)}"
        )


def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    row: PartnerClient,
    *,
    client_ip: str | None,
    detail: str,
) -> None:
    record_audit(
        session,
        principal=principal,
        action=action,
        resource_type=CLIENT,
        resource_id=row.client_id,
        client_ip=client_ip,
        detail=detail,
    )


async def list_clients(*, session: AsyncSession, principal: Principal) -> list[PartnerClient]:
    check_may_manage(principal)
    return await repository.by_org(session, principal.org)


async def get_client(
    *, session: AsyncSession, principal: Principal, client_key: str, for_update: bool = False
) -> PartnerClient:
    check_may_manage(principal)
    row = await repository.get(session, client_key, for_update=for_update)
    rels = organisation_relationships(principal, owner_org=row.org) if row else set()
    if row is None or not permits(principal, Capability.CLIENTS_MANAGE, rels):
        raise NotFound(f"no partner client {client_key}")
    return row


async def _token_endpoint(settings: Settings) -> str:
    return str((await oidc.metadata(settings)).get("token_endpoint", ""))


async def register_client(
    *,
    session: AsyncSession,
    principal: Principal,
    cmd: ClientCreate,
    settings: Settings,
    client_ip: str | None = None,
) -> PartnerClient | WithSecret:
    """Register a client of the caller's organisation at the provider (its secret returned, to
    show once), or, given a client_id, record one registered there by hand."""
    check_may_manage(principal)  # the client is the caller's own organisation's
    name, scopes = domain.check_name(cmd.name), domain.check_scopes(cmd.scopes)
    if await repository.count_active(session, principal.org) >= MAX_ACTIVE_PER_ORG:
        raise Conflict(
            f"an organisation may have at most {MAX_ACTIVE_PER_ORG} active partner clients; "
            "revoke one first"
        )
    now = _now()
    row = PartnerClient(
        id=f"pcl_{uuid.uuid4().hex}",
        client_id="",
        org=principal.org,
        ics=principal.ics or settings.ics,
        name=name,
        scopes=scopes,
        status=Status.ACTIVE.value,
        registration=Registration.MANUAL.value,
        secret_version=1,
        created_by=principal.identity,
        created_at=now,
        updated_at=now,
    )
    if cmd.client_id is not None:
        row.client_id = domain.check_client_id(cmd.client_id)
        if await repository.by_client_id(session, row.client_id) is not None:
            raise Conflict(f"client {row.client_id} is already recorded")
        session.add(row)
        _audit(
            session,
            principal,
            "record",
            row,
            client_ip=client_ip,
            detail=f"registered by hand at the provider; scopes {' '.join(scopes)}",
        )
        await session.flush()
        return row

    metadata = domain.registration_metadata(
        name=name, org=row.org, ics=row.ics, scopes=scopes, secret_version=1
    )
    registered = await provider.register(settings, metadata)
    if registered.client_secret is None:
        raise IssuerUnavailable("the identity provider registered the client but gave no secret")
    row.client_id = registered.client_id
    row.registration = Registration.DYNAMIC.value
    row.registration_client_uri = registered.registration_client_uri
    row.registration_token_sealed = sealing.seal(
        settings, registered.client_id, registered.registration_access_token
    )
    try:
        session.add(row)
        _audit(
            session,
            principal,
            "register",
            row,
            client_ip=client_ip,
            detail=f"scopes {' '.join(scopes)}",
        )
        await session.flush()
    except Exception:
        # the client exists at the provider but not here: take it away again
        try:
            await provider.delete(
                settings,
                uri=registered.registration_client_uri,
                token=registered.registration_access_token,
            )
        except Exception:
            logger.exception(
                "a client registered at the provider but not recorded: %s", row.client_id
            )
        raise
    return WithSecret(row, registered.client_secret, await _token_endpoint(settings))


async def rotate_secret(
    *,
    session: AsyncSession,
    principal: Principal,
    client_key: str,
    settings: Settings,
    client_ip: str | None = None,
) -> WithSecret:
    """A new secret from the provider; the old one stops working at once (tokens it already
    got live until they expire, 5 minutes at most locally)."""
    row = await get_client(
        session=session, principal=principal, client_key=client_key, for_update=True
    )
    domain.check_may_change(row.status, row.registration, action="rotate its secret")
    assert row.registration_client_uri and row.registration_token_sealed  # the table's CHECK
    token = sealing.unseal(settings, row.client_id, row.registration_token_sealed)
    version = row.secret_version + 1
    metadata = domain.registration_metadata(
        name=row.name, org=row.org, ics=row.ics, scopes=row.scopes, secret_version=version
    )
    updated = await provider.update(
        settings,
        uri=row.registration_client_uri,
        token=token,
        client_id=row.client_id,
        metadata=metadata,
    )
    if updated.client_secret is None:
        raise IssuerUnavailable("the identity provider issued no new secret")
    if updated.registration_access_token != token:
        row.registration_token_sealed = sealing.seal(
            settings, row.client_id, updated.registration_access_token
        )
    now = _now()
    row.secret_version, row.secret_rotated_at, row.updated_at = version, now, now
    session.add(row)
    _audit(
        session, principal, "rotate_secret", row, client_ip=client_ip, detail=f"secret {version}"
    )
    await session.flush()
    return WithSecret(row, updated.client_secret, await _token_endpoint(settings))


async def revoke_client(
    *,
    session: AsyncSession,
    principal: Principal,
    client_key: str,
    settings: Settings,
    client_ip: str | None = None,
) -> PartnerClient:
    """Delete the client at the provider (its client credentials grant fails from now on) and
    keep the record as revoked. Revoking a revoked client changes nothing."""
    row = await get_client(
        session=session, principal=principal, client_key=client_key, for_update=True
    )
    if row.status == Status.REVOKED:
        return row
    if row.registration == Registration.DYNAMIC:
        assert row.registration_client_uri and row.registration_token_sealed
        token = sealing.unseal(settings, row.client_id, row.registration_token_sealed)
        deleted = await provider.delete(settings, uri=row.registration_client_uri, token=token)
        detail = "deleted at the provider" if deleted else "the provider had already deleted it"
    else:
        detail = "recorded as revoked: delete it at the provider by hand"
    now = _now()
    row.status, row.revoked_at, row.updated_at = Status.REVOKED.value, now, now
    row.registration_token_sealed = None  # it opens nothing any more
    session.add(row)
    _audit(session, principal, "revoke", row, client_ip=client_ip, detail=detail)
    await session.flush()
    return row
