"""The delivery log (`message_delivery`): one row per attempt to reach one recipient on one
channel; what it already says of a message's recipients (`Past`); and how a log line may name
a recipient (`log_ref`)."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.messages import repository
from services.notifications.messages.recipients import Recipient
from services.notifications.messages.templates import Rendered
from shared.db import unit_of_work


@dataclass
class Past:
    """What the delivery log already says about one recipient of a message."""

    rows: int = 0
    sent: bool = False
    retrying: int = 0
    failed_channels: set[str] = field(default_factory=set)
    last_error: str | None = None


def history(rows: Iterable[Any]) -> dict[str, Past]:
    """What the delivery log's rows of a message (oldest first) say of each recipient."""
    out: dict[str, Past] = defaultdict(Past)
    for r in rows:
        p = out[r.recipient]
        p.rows += 1
        if r.status == "sent":
            p.sent = True
        elif r.status == "retrying":
            p.retrying += 1
        elif r.status == "failed":
            p.failed_channels.add(r.channel)
            p.last_error = r.error
    return dict(out)


def log_ref(recipient_key: str) -> str:
    """A recipient as the log may name them: the kind and a short hash of the key. A key may
    hold what a care plan calls a carer (`carer:<id>`, and a client may choose a name for an
    id), and logs must hold no personal data; the hash still matches the delivery log's row."""
    kind, _, rest = recipient_key.partition(":")
    if not rest:
        return kind
    # "h" first: ten hex characters can all be digits, and a ten-digit run may pass the NHS
    # number check (Modulus 11), so a log line could look as if it held one
    return f"{kind}:h{hashlib.sha256(recipient_key.encode()).hexdigest()[:10]}"


class DeliveryLog:
    """Writes the delivery-log rows of one recipient's attempt at one message."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        message_id: str,
        recipient: Recipient,
        attempt: int,
    ) -> None:
        self.sessions = sessions
        self.message_id = message_id
        self.recipient = recipient
        self.attempt = attempt
        self.rendered: Rendered | None = None

    async def insert(
        self,
        session: AsyncSession,
        delivery_id: str,
        channel: str,
        status: str,
        *,
        provider_ref: str | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> bool:
        r, rendered = self.recipient, self.rendered
        return await repository.log_delivery(
            session,
            id=delivery_id,
            m=self.message_id,
            rcp=r.key,
            ch=channel,
            var=rendered.variant if rendered else r.variant,
            lang=rendered.language if rendered else r.language,
            att=self.attempt,
            st=status,
            ref=provider_ref,
            err=error[:2000] if error else None,
            note=note or (rendered.note if rendered else None),
        )

    async def write(
        self,
        channel: str,
        status: str,
        *,
        provider_ref: str | None = None,
        error: str | None = None,
        note: str | None = None,
        delivery_id: str | None = None,
    ) -> None:
        async with unit_of_work(self.sessions) as session:
            await self.insert(
                session,
                delivery_id or f"dlv_{uuid.uuid4().hex}",
                channel,
                status,
                provider_ref=provider_ref,
                error=error,
                note=note,
            )
