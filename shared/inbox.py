"""The consumer's inbox: (consumer, event id) rows written in the same transaction as the
effect, so an event read again (a redelivery, a re-read after a crash before the offset
commit, the relay publishing a row twice) is recognised and skipped.

One statement records a whole run of events and answers which of them are new: the ids go
as one array parameter, so the statement's text is the same for every run (asyncpg prepares
it once per connection) and a run of hundreds of events costs one round trip, not one each.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text
from sqlmodel.ext.asyncio.session import AsyncSession

# ON CONFLICT DO NOTHING skips what the inbox already has; RETURNING names what it did not
_RECORD_NEW = text(
    "INSERT INTO inbox (consumer, event_id, topic) "
    "SELECT :consumer, id, :topic FROM unnest(:ids) AS id "
    "ON CONFLICT DO NOTHING RETURNING event_id"
).bindparams(bindparam("ids", type_=ARRAY(Text)))


async def record_new(
    session: AsyncSession, *, consumer: str, topic: str, event_ids: Iterable[str]
) -> set[str]:
    """Record the events in the inbox in the session's transaction; return the ids it did not
    have yet (an id given twice is recorded, and returned, once)."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    rows = await session.exec(  # type: ignore[call-overload]
        _RECORD_NEW.bindparams(consumer=consumer, topic=topic, ids=ids)
    )
    return {row[0] for row in rows}
