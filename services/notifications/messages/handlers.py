"""Use cases of people's messages over the API, in the request's transaction: staff's own
preferences, their in-app inbox and their team's, and the delivery log (every read of it
audited). The routes are in api.py, the SQL in repository.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.messages import domain as rules
from services.notifications.messages import repository
from services.notifications.messages.schemas import (
    DeliveryOut,
    InboxItemOut,
    InboxPage,
    MessageOut,
    PreferenceIn,
    PreferenceOut,
)
from shared.access import (
    Capability,
    Relationship,
    check_scope,
    relationships_for,
    roles_with,
)
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.settings import Settings

#: people with a Waymark login (machine clients have no inbox or preferences): the role table
STAFF_ROLES = tuple(sorted(roles_with(Capability.OWN_INBOX)))


def check_staff(principal: Principal, capability: Capability = Capability.OWN_INBOX) -> Principal:
    check_scope(principal, capability)  # a client's token: only with the scope
    if not principal.has(*STAFF_ROLES):
        raise Forbidden("preferences and inboxes belong to people with a Waymark login")
    return principal


# --- preferences --------------------------------------------------------------------------------


def _hhmm(t: time | None) -> str | None:
    return t.strftime("%H:%M") if t is not None else None


def _time(v: str | None) -> time | None:
    return time.fromisoformat(v) if v else None


async def preferences(session: AsyncSession, principal: Principal) -> PreferenceOut:
    """A user's own choices (the defaults, version 0, until they set them)."""
    row = await repository.preference(session, rules.staff_key(principal.identity, principal.org))
    if row is None:
        d = rules.DEFAULT_STAFF_PREFERENCE
        return PreferenceOut(
            user_id=principal.identity,
            org=principal.org,
            channels=list(d.channels),
            email=None,
            mobile=None,
            quiet_start=None,
            quiet_end=None,
            language=d.language,
            variant=d.variant,
            version=0,
        )
    return PreferenceOut(
        user_id=principal.identity,
        org=row.org,
        channels=list(row.channels),
        email=row.email,
        mobile=row.mobile,
        quiet_start=_hhmm(row.quiet_start),
        quiet_end=_hhmm(row.quiet_end),
        language=row.language,
        variant=row.variant,
        version=row.version,
    )


async def set_preferences(
    session: AsyncSession, principal: Principal, body: PreferenceIn, *, expected: int
) -> PreferenceOut:
    """Set a user's own choices if they are still at version `expected` (0: never set)."""
    values = dict(
        u=rules.staff_key(principal.identity, principal.org),
        org=principal.org,
        ch=list(body.channels),
        em=body.email,
        mob=body.mobile,
        qs=_time(body.quiet_start),
        qe=_time(body.quiet_end),
        lang=body.language,
        var=body.variant,
    )
    if expected == 0:
        row = await repository.create_preference(session, **values)
    else:
        row = await repository.update_preference(session, expected=expected, **values)
    if row is None:
        current = await preferences(session, principal)
        raise PreconditionFailed(
            f"your preferences have changed since you read them (you "
            f"have version {expected}, they are at {current.version}); "
            "read them again",
            current_version=current.version,
        )
    return await preferences(session, principal)


# --- the in-app inbox -----------------------------------------------------------------------------


def _owners(principal: Principal) -> list[str]:
    """Your inbox (keyed by issuer + subject) and your team's."""
    return [f"user:{principal.identity}", f"org:{principal.org}"]


def _item_out(row: Any) -> InboxItemOut:
    return InboxItemOut(
        id=row.id,
        owner=row.owner,
        org=row.org,
        message_id=row.message_id,
        referral_id=row.referral_id,
        subject=row.subject,
        body=row.body,
        variant=row.variant,
        created_at=row.created_at,
        read_at=row.read_at,
    )


async def inbox(
    session: AsyncSession,
    principal: Principal,
    *,
    unread: bool | None,
    limit: int,
    offset: int,
    client_ip: str | None,
) -> InboxPage:
    rows, total, unread_count = await repository.inbox_page(
        session,
        owners=_owners(principal),
        my_org=principal.org,
        unread=unread,
        limit=limit,
        offset=offset,
    )
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="InboxItem",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip,
            detail="inbox",
        )
    return InboxPage(
        items=[_item_out(r) for r in rows],
        total=total,
        unread=unread_count,
        limit=limit,
        offset=offset,
    )


async def mark_read(
    session: AsyncSession, principal: Principal, item_id: str, *, client_ip: str | None
) -> InboxItemOut:
    row = await repository.mark_read(
        session, item_id, owners=_owners(principal), my_org=principal.org
    )
    if row is None:
        raise NotFound(f"no inbox item {item_id} of yours or your team's")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="InboxItem",
        resource_id=row.id,
        patient_id=row.patient_id,
        client_ip=client_ip,
        detail="marked read",
    )
    return _item_out(row)


# --- the delivery log ---------------------------------------------------------------------------


def _scope(principal: Principal, settings: Settings) -> str | None:
    """The messages a caller may see: all (None), or those of referrals from or to their
    organisation."""
    through = relationships_for(principal, Capability.MESSAGE_LOG_READ)
    if Relationship.ICS_COORDINATION in through and principal.ics == settings.ics:
        return None
    if Relationship.REFERRAL in through:
        return principal.org
    raise Forbidden(
        "the delivery log is for staff of the organisations a referral concerns "
        f"and the coordinators of {settings.ics}"
    )


async def _with_deliveries(session: AsyncSession, rows: list[Any]) -> list[MessageOut]:
    ids = [r.id for r in rows]
    by_message: dict[str, list[DeliveryOut]] = {i: [] for i in ids}
    if ids:
        for d in await repository.deliveries_of(session, ids):
            by_message[d.message_id].append(DeliveryOut.model_validate(d, from_attributes=True))
    out = []
    for r in rows:
        ctx = r.context if isinstance(r.context, dict) else json.loads(r.context or "{}")
        out.append(
            MessageOut(
                id=r.id,
                event_id=r.event_id,
                event_type=r.event_type,
                audience=r.audience,
                template=r.template,
                referral_id=r.referral_id,
                patient_id=r.patient_id,
                org=r.org,
                context=ctx,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_error=r.last_error,
                created_at=r.created_at,
                updated_at=r.updated_at,
                deliveries=by_message[r.id],
            )
        )
    return out


def _audit_read(
    session: AsyncSession, principal: Principal, row: Any, client_ip: str | None
) -> None:
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Message",
        resource_id=row.id,
        patient_id=row.patient_id,
        client_ip=client_ip,
        detail="delivery log",
    )


_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


async def list_messages(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    *,
    referral_id: str | None,
    status: list[str] | None,
    since: datetime | None,
    limit: int,
    offset: int,
    client_ip: str | None,
) -> tuple[list[MessageOut], int]:
    """The delivery log (newest first) with every attempt, and how many messages match."""
    org = _scope(principal, settings)
    if since is not None and not 1900 <= since.year <= 9998:
        raise ValidationFailed("since must be between the years 1900 and 9998")
    rows, total = await repository.list_messages(
        session,
        visible_to_org=org,
        referral_id=referral_id,
        statuses=list(status) if status else None,
        since=since,
        limit=limit,
        offset=offset,
    )
    for r in rows:
        _audit_read(session, principal, r, client_ip)
    return await _with_deliveries(session, rows), total


async def get_message(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    message_id: str,
    *,
    client_ip: str | None,
) -> MessageOut:
    org = _scope(principal, settings)
    row = None
    if _ID.match(message_id):
        row = await repository.get_message(session, message_id, visible_to_org=org)
    if row is None:
        # the same answer for "absent" and "not yours", so ids cannot be probed
        raise NotFound(f"no message {message_id} that you may see")
    _audit_read(session, principal, row, client_ip)
    return (await _with_deliveries(session, [row]))[0]
