"""The journeys worker's settings (workflows/journeys/worker.py), a part of
`shared.settings.Settings` kept in a module of its own. Read with the same `WAYMARK_` prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JourneysWorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # journeys the worker keeps in memory between their workflow tasks; one beyond this is
    # evicted and replayed from its history at its next task (a timer, a signal, a query).
    # A cached journey costs ~160 KB of worker RSS (most of it the SDK's own per-workflow state:
    # ~120 KB even unsandboxed; issue #20), so 4,000 keep the worker under ~0.8 GB however many
    # journeys are open (the SDK's default is 1,000)
    journeys_worker_max_cached_workflows: int = Field(default=4000, ge=0)
