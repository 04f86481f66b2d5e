"""The database connection pool's settings, a part of `shared.settings.Settings` kept in a
module of its own. Read with the same `WAYMARK_` prefix. Why each value: issue #20's profile
of referrals-api under bench/referrals.py (bench/RESULTS.md)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabasePoolSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # connections an API process keeps open. A request holds one only from its first statement
    # to its commit (a few round trips), so 10 serve the 16 requests in flight of the benches
    # and the mixed load; 5 APIs x 10 stay under what 5 x (5 + 10 overflow) could open before,
    # well inside PostgreSQL's max_connections 200 with the relays, consumers and worker
    db_pool_size: int = Field(default=10, ge=1)
    # connections an API engine opens beyond its pool when it is busy (a process that sizes
    # its own pool keeps SQLAlchemy's 10). 0: an overflow connection is closed
    # when it is checked in, so a steady load above the pool opened and closed one per request
    # (connect, authenticate, every statement prepared again); waiting for a pooled one is
    # cheaper than that
    db_pool_max_overflow: int = Field(default=0, ge=0)
    # a connection idle longer than this is pinged before use and replaced if PostgreSQL
    # dropped it (a restart, an idle timeout). One used more recently is known to be alive:
    # pinging it on every checkout cost three round trips (BEGIN, SELECT, ROLLBACK) per
    # request. A connection that dies while busy fails its statement and SQLAlchemy then
    # reconnects the whole pool
    db_pool_ping_after_idle_seconds: float = Field(default=10.0, ge=0)
