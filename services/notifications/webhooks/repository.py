"""Every query of partner webhooks: subscriptions (`webhook_subscription`), the deliveries owed
to them (`webhook_delivery`) and each attempt (`webhook_attempt`), in the caller's session and
transaction. The use cases are in handlers.py, the consumer's side in effects.py (and
alerts/effects.py), the sending in sender.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute
from services.notifications.models import WebhookSubscription

# --- subscriptions ------------------------------------------------------------------------------


async def count_subscriptions(session: AsyncSession, org: str) -> int:
    """An organisation's subscriptions that are not deleted."""
    return (  # type: ignore[no-any-return]
        await execute(
            session,
            "SELECT count(*) FROM webhook_subscription WHERE org = :org AND deleted_at IS NULL",
            org=org,
        )
    ).scalar()


async def list_subscriptions(session: AsyncSession, org: str) -> list[WebhookSubscription]:
    rows = await session.exec(
        select(WebhookSubscription)
        .where(WebhookSubscription.org == org, WebhookSubscription.deleted_at.is_(None))  # type: ignore[union-attr]
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return list(rows.all())


async def get_subscription(
    session: AsyncSession, subscription_id: str, *, for_update: bool = False
) -> WebhookSubscription | None:
    query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    if for_update:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def subscriptions_for_referral(
    session: AsyncSession, *, from_org: str, to_org: str, event_type: str
) -> list[Any]:
    """The live subscriptions of the two organisations a referral concerns that ask for the
    event's type (only theirs are even looked at)."""
    return list(
        (
            await execute(
                session,
                """
        SELECT id, org, event_types, filters FROM webhook_subscription
        WHERE deleted_at IS NULL AND org IN (:f, :t) AND :etype = ANY(event_types)""",
                f=from_org,
                t=to_org,
                etype=event_type,
            )
        ).all()
    )


async def subscriptions_for_alert(
    session: AsyncSession, *, orgs: Sequence[str], event_type: str
) -> list[Any]:
    """The live subscriptions of an alert's addressed organisations that ask for its type."""
    return list(
        (
            await execute(
                session,
                """
        SELECT id, org, event_types FROM webhook_subscription
        WHERE deleted_at IS NULL AND org = ANY(:orgs) AND :etype = ANY(event_types)""",
                orgs=list(orgs),
                etype=event_type,
            )
        ).all()
    )


# --- deliveries: queued, listed, sent again -------------------------------------------------------


async def queue_delivery(
    session: AsyncSession,
    *,
    subscription_id: str,
    event_id: str,
    event_type: str,
    event_time: datetime,
    payload: Any,
) -> None:
    """One event owed to one subscription, once (a redelivered event queues nothing twice);
    its id is the `webhook-id` the partner sees."""
    await execute(
        session,
        """
            INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type,
                                          event_time, payload)
            VALUES (:id, :sub, :eid, :etype, :at, CAST(:payload AS JSONB))
            ON CONFLICT (subscription_id, event_id) DO NOTHING""",
        id=f"msg_{uuid.uuid4().hex}",
        sub=subscription_id,
        eid=event_id,
        etype=event_type,
        at=event_time,
        payload=json.dumps(payload, default=str),
    )


async def cancel_pending(session: AsyncSession, subscription_id: str) -> int:
    """What was still owed is not sent any more (and leaves the dispatcher's due index)."""
    return (  # type: ignore[no-any-return]
        await execute(
            session,
            """
        UPDATE webhook_delivery SET status = 'cancelled', lease_until = NULL,
            last_error = 'subscription deleted'
        WHERE subscription_id = :sid AND status = 'pending'""",
            sid=subscription_id,
        )
    ).rowcount


DELIVERY_COLUMNS = """id, subscription_id, event_id, event_type, event_time, status, attempts,
    CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,
    last_status_code, last_error, created_at, delivered_at"""


async def list_deliveries(
    session: AsyncSession,
    subscription_id: str,
    *,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> list[Any]:
    """Newest first; `since`/`until` bound when the delivery was queued."""
    return list(
        (
            await execute(
                session,
                f"""
        SELECT {DELIVERY_COLUMNS} FROM webhook_delivery
        WHERE subscription_id = :sid
          AND (CAST(:status AS text) IS NULL OR status = :status)
          AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)
          AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)
        ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
                sid=subscription_id,
                status=status,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )
        ).all()
    )


async def get_delivery(session: AsyncSession, subscription_id: str, delivery_id: str) -> Any:
    """A delivery of the subscription, with its payload; None if it has none of that id."""
    return (
        await execute(
            session,
            f"""
        SELECT {DELIVERY_COLUMNS}, payload FROM webhook_delivery
        WHERE id = :id AND subscription_id = :sid""",
            id=delivery_id,
            sid=subscription_id,
        )
    ).first()


async def attempts(session: AsyncSession, delivery_id: str) -> list[Any]:
    """A delivery's attempts, oldest first."""
    return list(
        (
            await execute(
                session,
                """
        SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempt
        WHERE delivery_id = :id ORDER BY attempt""",
                id=delivery_id,
            )
        ).all()
    )


async def lock_delivery(session: AsyncSession, subscription_id: str, delivery_id: str) -> Any:
    """A delivery's status and whether it is being sent right now, locked for a resend."""
    return (
        await execute(
            session,
            """
        SELECT status, lease_until > now() AS in_flight FROM webhook_delivery
        WHERE id = :id AND subscription_id = :sid FOR UPDATE""",
            id=delivery_id,
            sid=subscription_id,
        )
    ).first()


async def requeue_delivery(session: AsyncSession, delivery_id: str) -> Any:
    """Due now, with the whole retry schedule again; the updated row."""
    return (
        await execute(
            session,
            f"""
        UPDATE webhook_delivery SET status = 'pending', next_attempt_at = now(),
            retry_from = attempts, lease_until = NULL
        WHERE id = :id RETURNING {DELIVERY_COLUMNS}""",
            id=delivery_id,
        )
    ).first()


async def requeue_range(
    session: AsyncSession,
    subscription_id: str,
    *,
    since: datetime,
    until: datetime,
    statuses: list[str],
) -> int:
    """Every delivery queued in [since, until) in one of `statuses` due again now, except
    those being sent right now; how many."""
    return (  # type: ignore[no-any-return]
        await execute(
            session,
            """
        UPDATE webhook_delivery SET status = 'pending', next_attempt_at = now(),
            retry_from = attempts, lease_until = NULL
        WHERE subscription_id = :sid AND created_at >= :since AND created_at < :until
          AND status = ANY(:statuses) AND (lease_until IS NULL OR lease_until <= now())""",
            sid=subscription_id,
            since=since,
            until=until,
            statuses=statuses,
        )
    ).rowcount


# --- the sender's claims and results ------------------------------------------------------------

# Each active partner's own due queue, up to its free share (its cap minus what it has in
# flight anywhere, i.e. leased), oldest first across partners. Cost grows with the number of
# partners, not with a backlog: a partner with 100 000 overdue deliveries costs one index
# probe, and cannot push another partner's deliveries out of the claim. `:answered` are the
# claiming sender's leased rows whose POST is over (their results are being recorded): no
# request to the partner is open for them, so they do not count against its share.
_CLAIM = """
WITH picked AS (
    SELECT d.id, d.next_attempt_at
    FROM webhook_subscription s
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM webhook_delivery d
        WHERE d.subscription_id = s.id AND d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
        ORDER BY d.next_attempt_at
        LIMIT GREATEST(0, :per_sub - (
            SELECT count(*) FROM webhook_delivery b
            WHERE b.subscription_id = s.id AND b.status = 'pending'
              AND b.lease_until IS NOT NULL AND b.lease_until >= now()
              AND b.id <> ALL(CAST(:answered AS text[]))))
    ) d
    WHERE s.status = 'active' AND s.deleted_at IS NULL
    ORDER BY d.next_attempt_at LIMIT :free
)
UPDATE webhook_delivery d SET lease_until = now() + make_interval(secs => :lease)
FROM webhook_subscription s
WHERE d.id IN (SELECT id FROM picked) AND s.id = d.subscription_id
  AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())
  AND s.status = 'active' AND s.deleted_at IS NULL
RETURNING d.id, d.subscription_id, d.payload, d.attempts, d.retry_from, d.lease_until,
          s.org, s.url, s.secret, s.previous_secret, s.previous_secret_until"""

# seconds until the next delivery could be claimed (a retry's time, or a lost lease's end)
_NEXT_DUE = """
SELECT EXTRACT(EPOCH FROM min(GREATEST(d.next_attempt_at,
                                       COALESCE(d.lease_until, d.next_attempt_at))) - now())
FROM webhook_delivery d JOIN webhook_subscription s ON s.id = d.subscription_id
WHERE d.status = 'pending' AND s.status = 'active' AND s.deleted_at IS NULL"""

_RECORD = """
WITH r AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:leases AS timestamptz[]),
                         CAST(:statuses AS text[]), CAST(:delays AS float8[]),
                         CAST(:codes AS int[]), CAST(:errors AS text[]),
                         CAST(:durations AS int[]), CAST(:ats AS timestamptz[]))
        AS r(id, lease, status, delay, code, error, duration_ms, at)
), upd AS (
    UPDATE webhook_delivery d SET
        attempts = d.attempts + 1,
        status = r.status,
        next_attempt_at = CASE WHEN r.status = 'pending'
                               THEN now() + make_interval(secs => r.delay)
                               ELSE d.next_attempt_at END,
        lease_until = NULL,
        last_status_code = r.code,
        last_error = r.error,
        delivered_at = CASE WHEN r.status = 'delivered' THEN r.at ELSE d.delivered_at END
    FROM r WHERE d.id = r.id AND d.lease_until = r.lease
    RETURNING d.id, d.attempts, d.subscription_id, r.status
), ins AS (
    INSERT INTO webhook_attempt (delivery_id, attempt, at, status_code, error, duration_ms)
    SELECT upd.id, upd.attempts, r.at, r.code, r.error, r.duration_ms
    FROM upd JOIN r ON r.id = upd.id
    RETURNING delivery_id
), cleared AS (
    -- a success ends a subscription's failing spell (in this statement: one round trip less
    -- per batch than a statement of its own)
    UPDATE webhook_subscription s SET failing_since = NULL
    WHERE s.id IN (SELECT upd.subscription_id FROM upd WHERE upd.status = 'delivered')
      AND s.failing_since IS NOT NULL
)
SELECT upd.id, upd.subscription_id, upd.status FROM upd"""


async def claim(
    session: AsyncSession,
    *,
    per_sub: int,
    free: int,
    lease: float,
    answered: Sequence[str] = (),
) -> list[Any]:
    """Lease up to `free` due deliveries, at most `per_sub` in flight per subscription (not
    counting the `answered` ones, whose results are being recorded)."""
    return list(
        (
            await execute(
                session, _CLAIM, per_sub=per_sub, free=free, lease=lease, answered=list(answered)
            )
        ).all()
    )


async def next_due_in(session: AsyncSession) -> float | None:
    value = (await execute(session, _NEXT_DUE)).scalar()
    return None if value is None else float(value)


async def record_results(session: AsyncSession, **columns: list[Any]) -> list[Any]:
    """Each attempt and its delivery's new state, for the results whose lease still holds
    (columns: ids, leases, statuses, delays, codes, errors, durations, ats); a subscription
    with a delivery delivered stops failing."""
    return list((await execute(session, _RECORD, **columns)).all())


async def mark_failing(session: AsyncSession, subscription_ids: Sequence[str]) -> None:
    await execute(
        session,
        """
                    UPDATE webhook_subscription SET failing_since = now()
                    WHERE id = ANY(:ids) AND failing_since IS NULL""",
        ids=sorted(subscription_ids),
    )


async def disable_failing(
    session: AsyncSession, *, window_seconds: float, subscription_ids: list[str] | None
) -> list[Any]:
    """Disable the active subscriptions (of `subscription_ids`, or all) failing with no
    success for the window; the disabled rows."""
    scope = "" if subscription_ids is None else "AND id = ANY(:ids)"
    params: dict[str, Any] = {"window": float(window_seconds)}
    if subscription_ids is not None:
        params["ids"] = subscription_ids
    return list(
        (
            await execute(
                session,
                f"""
        UPDATE webhook_subscription SET status = 'disabled', disabled_at = now(),
            disabled_reason = 'no successful delivery since '
                || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                || ' UTC (' || CAST(:window AS text) || ' s without a success)',
            version = version + 1, updated_at = now()
        WHERE status = 'active' AND deleted_at IS NULL AND failing_since IS NOT NULL
          AND failing_since <= now() - make_interval(secs => :window) {scope}
        RETURNING id, org, url, failing_since, disabled_reason""",
                **params,
            )
        ).all()
    )


async def last_error(session: AsyncSession, subscription_id: str) -> str | None:
    """The latest error of a subscription's deliveries."""
    last = (
        await execute(
            session,
            """
            SELECT d.last_error FROM webhook_delivery d
            WHERE d.subscription_id = :sid AND d.last_error IS NOT NULL
            ORDER BY d.next_attempt_at DESC LIMIT 1""",
            sid=subscription_id,
        )
    ).first()
    return last.last_error if last else None
