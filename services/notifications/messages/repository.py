"""Every query of people's messages, in the caller's session and transaction: the messages
events owe (`message`), each attempt to reach a recipient (`message_delivery`, the delivery
log), the in-app inbox (`inbox_item`) and staff's own preferences (`preference`).

The API's use cases are in handlers.py, the consumer's side in effects.py (and
alerts/effects.py), the sending in sender.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute

# --- messages owed: queued by the consumer --------------------------------------------------------


async def queue_message(
    session: AsyncSession,
    *,
    event_id: str,
    event_type: str,
    audience: str,
    template: str,
    patient_id: str | None,
    referral_id: str | None,
    org: str | None,
    context: Mapping[str, Any],
) -> None:
    """The message an event owes an audience, once (a redelivered event queues nothing
    twice); who exactly receives it is worked out when it is sent."""
    await execute(
        session,
        """
            INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                                 referral_id, org, context)
            VALUES (:id, :eid, :etype, :aud, :tpl, :pid, :rid, :org, CAST(:ctx AS JSONB))
            ON CONFLICT (event_id, audience) DO NOTHING""",
        id=f"msg_{uuid.uuid4().hex}",
        eid=event_id,
        etype=event_type,
        aud=audience,
        tpl=template,
        pid=patient_id,
        rid=referral_id,
        org=org,
        ctx=json.dumps(context, default=str),
    )


# --- the in-app inbox -----------------------------------------------------------------------------


async def add_inbox_item(
    session: AsyncSession, *, item_id: str, owner: str, org: str, subject: str, body: str
) -> None:
    """An inbox item that is no message's delivery (a notice to a team)."""
    await execute(
        session,
        """
        INSERT INTO inbox_item (id, owner, org, subject, body)
        VALUES (:id, :owner, :org, :subject, :body)""",
        id=item_id,
        owner=owner,
        org=org,
        subject=subject,
        body=body,
    )


async def deliver_inbox_item(
    session: AsyncSession,
    *,
    owner: str,
    org: str,
    message_id: str,
    subject: str,
    body: str,
    variant: str,
) -> str | None:
    """A message's item in an inbox, at most once per (message, owner); its id, or None if
    it was there already."""
    row = (
        await execute(
            session,
            """INSERT INTO inbox_item (id, owner, org, message_id, subject, body, variant)
               VALUES (:id, :owner, :org, :mid, :subject, :body, :variant)
               ON CONFLICT (message_id, owner) WHERE message_id IS NOT NULL DO NOTHING
               RETURNING id""",
            id=f"inb_{uuid.uuid4().hex}",
            owner=owner,
            org=org,
            mid=message_id,
            subject=subject,
            body=body,
            variant=variant,
        )
    ).first()
    return row.id if row is not None else None


#: an item is yours when it is addressed to you or your team, *for your organisation*: the
#: same person signed in for another organisation does not see it
MINE = "owner = ANY(:owners) AND org = :my_org"

_ITEM_SELECT = """
    SELECT i.*, m.referral_id, m.patient_id FROM inbox_item i
    LEFT JOIN message m ON m.id = i.message_id"""


async def inbox_page(
    session: AsyncSession,
    *,
    owners: list[str],
    my_org: str,
    unread: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int, int]:
    """The items of `owners` for `my_org`, newest first; how many match; how many are
    unread in all."""
    cond = "i.owner = ANY(:owners) AND i.org = :my_org"
    if unread is True:
        cond += " AND i.read_at IS NULL"
    elif unread is False:
        cond += " AND i.read_at IS NOT NULL"
    rows = (
        await execute(
            session,
            f"{_ITEM_SELECT} WHERE {cond} "  # noqa: S608 - fixed text
            "ORDER BY i.created_at DESC, i.id LIMIT :lim OFFSET :off",
            owners=owners,
            my_org=my_org,
            lim=limit,
            off=offset,
        )
    ).all()
    total = (
        await execute(
            session,
            f"SELECT count(*) FROM inbox_item i WHERE {cond}",
            owners=owners,
            my_org=my_org,
        )
    ).scalar_one()
    unread_count = (
        await execute(
            session,
            f"SELECT count(*) FROM inbox_item WHERE {MINE} AND read_at IS NULL",
            owners=owners,
            my_org=my_org,
        )
    ).scalar_one()
    return list(rows), total, unread_count


async def mark_read(session: AsyncSession, item_id: str, *, owners: list[str], my_org: str) -> Any:
    """Mark the item read (once: reading it again changes nothing); the item, or None if it
    is not one of `owners`'."""
    await execute(
        session,
        f"UPDATE inbox_item SET read_at = now() WHERE id = :id AND {MINE} AND read_at IS NULL",
        id=item_id,
        owners=owners,
        my_org=my_org,
    )
    return (
        await execute(
            session,
            f"{_ITEM_SELECT} WHERE i.id = :id AND i.owner = ANY(:owners) AND i.org = :my_org",
            id=item_id,
            owners=owners,
            my_org=my_org,
        )
    ).first()


# --- staff's own preferences ----------------------------------------------------------------------


async def preference(session: AsyncSession, user_key: str) -> Any:
    return (
        await execute(session, "SELECT * FROM preference WHERE user_id = :u", u=user_key)
    ).first()


async def create_preference(session: AsyncSession, **values: Any) -> Any:
    """The first preferences of a user (values: u, org, ch, em, mob, qs, qe, lang, var); the
    new version, or None if they have some already."""
    return (
        await execute(
            session,
            """
            INSERT INTO preference (user_id, org, channels, email, mobile, quiet_start,
                                    quiet_end, language, variant, version, updated_at)
            VALUES (:u, :org, :ch, :em, :mob, :qs, :qe, :lang, :var, 1, now())
            ON CONFLICT (user_id) DO NOTHING RETURNING version""",
            **values,
        )
    ).first()


async def update_preference(session: AsyncSession, *, expected: int, **values: Any) -> Any:
    """Change a user's preferences if they are at version `expected`; the new version, or
    None if they are not."""
    return (
        await execute(
            session,
            """
            UPDATE preference SET org = :org, channels = :ch, email = :em, mobile = :mob,
                quiet_start = :qs, quiet_end = :qe, language = :lang, variant = :var,
                version = version + 1, updated_at = now()
            WHERE user_id = :u AND version = :v RETURNING version""",
            v=expected,
            **values,
        )
    ).first()


async def staff_preference(session: AsyncSession, user_key: str) -> Any:
    """What the sender needs of a user's preferences; None if they have set none."""
    return (
        await execute(
            session,
            """
                SELECT channels, email, mobile, quiet_start, quiet_end, language, variant
                FROM preference WHERE user_id = :u""",
            u=user_key,
        )
    ).first()


async def email_preferences(session: AsyncSession, org: str) -> list[Any]:
    """The preferences of the staff of `org` who chose email and gave an address."""
    return list(
        (
            await execute(
                session,
                """
                SELECT user_id, channels, email, mobile, quiet_start, quiet_end, language,
                       variant
                FROM preference WHERE org = :org AND 'email' = ANY(channels)
                  AND email IS NOT NULL ORDER BY user_id LIMIT 200""",
                org=org,
            )
        ).all()
    )


# --- the delivery log, as the API shows it --------------------------------------------------------

_MESSAGE_SELECT = """
    SELECT m.* FROM message m LEFT JOIN referral_index ri ON ri.referral_id = m.referral_id"""


def _visible(org: str | None) -> tuple[str, dict[str, Any]]:
    """Every message (None), or those of referrals from or to `org`, as a condition on `m`
    (message) and `ri` (the referral index)."""
    if org is None:
        return "TRUE", {}
    return "(ri.from_org = :my_org OR ri.to_org = :my_org)", {"my_org": org}


async def list_messages(
    session: AsyncSession,
    *,
    visible_to_org: str | None,
    referral_id: str | None,
    statuses: list[str] | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    """Messages newest first, and how many match."""
    cond, params = _visible(visible_to_org)
    conds = [cond]
    if referral_id is not None:
        conds.append("m.referral_id = :rid")
        params["rid"] = referral_id
    if statuses:
        conds.append("m.status = ANY(:statuses)")
        params["statuses"] = statuses
    if since is not None:
        conds.append("m.created_at >= :since")
        params["since"] = since
    where = " AND ".join(conds)
    rows = (
        await execute(
            session,
            f"{_MESSAGE_SELECT} WHERE {where} "  # noqa: S608 - fixed text
            "ORDER BY m.created_at DESC, m.id LIMIT :lim OFFSET :off",
            lim=limit,
            off=offset,
            **params,
        )
    ).all()
    total = (
        await execute(
            session,
            "SELECT count(*) FROM message m LEFT JOIN referral_index ri "
            f"ON ri.referral_id = m.referral_id WHERE {where}",
            **params,
        )
    ).scalar_one()
    return list(rows), total


async def get_message(session: AsyncSession, message_id: str, *, visible_to_org: str | None) -> Any:
    cond, params = _visible(visible_to_org)
    return (
        await execute(
            session, f"{_MESSAGE_SELECT} WHERE m.id = :id AND {cond}", id=message_id, **params
        )
    ).first()


async def deliveries_of(session: AsyncSession, message_ids: list[str]) -> list[Any]:
    """The delivery log's rows of the messages, oldest first."""
    return list(
        (
            await execute(
                session,
                "SELECT * FROM message_delivery WHERE message_id = ANY(:ids) ORDER BY at, id",
                ids=message_ids,
            )
        ).all()
    )


# --- the sender's claims, leases and delivery log -------------------------------------------------


async def claim(session: AsyncSession, *, limit: int, lease_seconds: float) -> list[Any]:
    """Lease up to `limit` due messages no one else holds."""
    return list(
        (
            await execute(
                session,
                """
                WITH due AS (
                    SELECT id FROM message
                    WHERE status IN ('pending', 'held') AND next_attempt_at <= now()
                      AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
                UPDATE message m SET lease_until = now() + make_interval(secs => :lease)
                FROM due WHERE m.id = due.id
                RETURNING m.id, m.event_id, m.event_type, m.audience, m.template,
                          m.patient_id, m.referral_id, m.org, m.context, m.attempts,
                          m.lease_until""",
                n=limit,
                lease=lease_seconds,
            )
        ).all()
    )


async def renew_lease(
    session: AsyncSession, message_id: str, *, token: datetime, lease_seconds: float
) -> datetime | None:
    """The lease renewed while it is still ours (`token`); its new end, or None if lost."""
    row = (
        await execute(
            session,
            """
                UPDATE message SET lease_until = now() + make_interval(secs => :lease)
                WHERE id = :id AND lease_until = :token RETURNING lease_until""",
            id=message_id,
            token=token,
            lease=lease_seconds,
        )
    ).first()
    return row.lease_until if row is not None else None


async def finish(
    session: AsyncSession,
    message_id: str,
    *,
    token: datetime,
    status: str,
    error: str | None,
    next_at: datetime | None,
) -> bool:
    """The message's status after a round, while the lease is still ours; False if lost."""
    # next_attempt_at is set only when there is a next attempt: setting it wakes the
    # dispatchers (the NOTIFY trigger), which a finished message has no need of
    sets = (
        "status = :st, lease_until = NULL, last_error = :err, updated_at = now(), "
        "attempts = attempts + 1"
    )
    params: dict[str, Any] = {"st": status, "err": error, "id": message_id, "token": token}
    if next_at is not None:
        sets += ", next_attempt_at = :nxt"
        params["nxt"] = next_at
    row = (
        await execute(
            session,
            f"UPDATE message SET {sets} "  # noqa: S608 - fixed
            "WHERE id = :id AND lease_until = :token RETURNING id",
            **params,
        )
    ).first()
    return row is not None


async def delivery_history(session: AsyncSession, message_id: str) -> list[Any]:
    """What the delivery log says of a message, oldest first."""
    return list(
        (
            await execute(
                session,
                """
                SELECT recipient, channel, status, error FROM message_delivery
                WHERE message_id = :m ORDER BY at""",
                m=message_id,
            )
        ).all()
    )


async def log_delivery(session: AsyncSession, **row: Any) -> bool:
    """One attempt in the delivery log (row: id, m, rcp, ch, var, lang, att, st, ref, err,
    note); a recipient is logged as sent at most once: False if they were already."""
    return (
        await execute(
            session,
            """
            INSERT INTO message_delivery (id, message_id, recipient, channel, variant,
                                          language, attempt, status, provider_ref, error, note)
            VALUES (:id, :m, :rcp, :ch, :var, :lang, :att, :st, :ref, :err, :note)
            ON CONFLICT (message_id, recipient) WHERE status = 'sent' DO NOTHING
            RETURNING id""",
            **row,
        )
    ).first() is not None
