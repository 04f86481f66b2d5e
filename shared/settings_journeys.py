"""The journeys worker's settings (workflows/journeys/worker.py), a part of
`shared.settings.Settings` kept in a module of its own. Read with the same `WAYMARK_` prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JourneysWorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # journeys the worker keeps in memory between their workflow tasks; one beyond this is
    # evicted and replayed from its history at its next task (a timer, a signal, a query).
    # A cached journey costs ~160 KB of worker RSS in a quiet worker (most of it the SDK's own
    # per-workflow state: ~120 KB even unsandboxed) and ~190 KB after a burst (the worker held
    # 885 MB with 4,000 cached after 25,000 journeys; issue #20), so 3,000 keep it near 0.7 GB
    # however many journeys are open (the SDK's default is 1,000)
    journeys_worker_max_cached_workflows: int = Field(default=3000, ge=0)
    # workflow-task polls the worker keeps open at once, and the share of them on the task
    # queue (new journeys, evicted ones) rather than its own sticky queue (cached ones). The
    # SDK's 5 x 0.2 leave ONE poll for new journeys: in a 10,000-journey burst the queue held a
    # backlog of 8,041 tasks, dispatched at 3.4/s against 110/s added, with the worker ~90% idle
    # (issue #20; DescribeTaskQueue with stats). Each poll is a round trip to the server, so a
    # burst needs several in flight; 20 x 0.5 = 10 for new journeys, 10 for cached ones
    journeys_worker_workflow_task_polls: int = Field(default=20, ge=2)
    journeys_worker_nonsticky_poll_ratio: float = Field(default=0.5, gt=0, le=1)
    # how often the worker counts the journeys whose workflow tasks keep failing (flagged by
    # Temporal after two failures in a row) and logs them as errors; such a journey raises no
    # alert until repaired (HAZ-100, `python -m workflows.journeys.repair`). 0 turns it off
    journeys_failing_check_seconds: float = Field(default=60, ge=0)
