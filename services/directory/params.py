"""What every route of the directory API shares: the problem responses it documents, and the
types of its path and header parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain
from shared.access import Capability, Principal, check_scope
from shared.auth import CurrentPrincipal
from shared.db import make_sessionmaker
from shared.identifiers import ORG_CODE_PATTERN
from shared.settings import Settings
from shared.web import IDEMPOTENCY_HEADER

PROBLEM = {"model": None, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, **PROBLEM}
    for s, d in [
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Conflict"),
        (412, "Precondition failed"),
        (422, "Invalid request"),
    ]
}

ServiceId = Annotated[str, Path(pattern=domain.RECORD_ID, max_length=64)]
OrgCodePath = Annotated[str, Path(pattern=ORG_CODE_PATTERN)]
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='the ETag you read, e.g. W/"3"')
]


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def directory_reader(principal: CurrentPrincipal) -> Principal:
    """A reader of the directory: anyone signed in; a system's client only with the scope."""
    # async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker
    # thread, a hop per request that the search bench's profile showed
    check_scope(principal, Capability.DIRECTORY_READ)
    return principal


DirectoryReader = Annotated[Principal, Depends(directory_reader)]


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session that opens no transaction, for the searches: each is one statement (or a
    postcode and then the search, which need no common snapshot). The search bench's profile
    showed BEGIN and COMMIT as two of a search's five round trips; this uses the app's pool."""
    state = request.app.state
    if getattr(state, "read_sessions", None) is None:
        # AUTOCOMMIT is set on the connection object, with no round trip, and undone when
        # the connection goes back to the pool
        state.read_sessions = make_sessionmaker(
            state.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
    async with state.read_sessions() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]
