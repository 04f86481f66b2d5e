"""How Waymark's processes run, as one settings mixin: database pools (settings_db), the
outbox relay's and consumers' batches (settings_pipeline), the journeys worker (settings_journeys).
Each module documents its fields and why each default is what it is."""

from __future__ import annotations

from shared.settings_db import DatabasePoolSettings
from shared.settings_journeys import JourneysWorkerSettings
from shared.settings_pipeline import PipelineSettings


class RuntimeSettings(PipelineSettings, DatabasePoolSettings, JourneysWorkerSettings):
    """The runtime tunables of every process (the performance work of issue #20)."""
