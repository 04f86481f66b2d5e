"""The registry of event types: type + version -> pydantic model, with upcasters so a
consumer always works with the newest version of an event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.events.envelope import CloudEvent, EventData

SCHEMA_DIR = Path(__file__).parent / "schemas"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(ValueError):
    pass


class EventRegistry:
    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[EventData]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        # every consumed event asks for its type's newest version (twice): kept, not searched
        self._latest: dict[str, int] = {}

    def register(self, model: type[EventData]) -> type[EventData]:
        key = (model.EVENT_TYPE, model.VERSION)
        if not model.EVENT_TYPE or not model.SOURCE:
            raise ValueError(f"{model.__name__} needs EVENT_TYPE and SOURCE")
        if key in self._models:
            raise ValueError(f"event {key} registered twice")
        self._models[key] = model
        self._latest[model.EVENT_TYPE] = max(self._latest.get(model.EVENT_TYPE, 0), model.VERSION)
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning version N's data into version N+1's."""

        def deco(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return deco

    def latest_version(self, event_type: str) -> int:
        try:
            return self._latest[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}") from None

    def model(self, event_type: str, version: int) -> type[EventData]:
        try:
            return self._models[(event_type, version)]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r} v{version}") from None

    def parse(self, event: CloudEvent) -> EventData:
        """Validate an event's data, upcast to the newest version, return the model."""
        version = event.version
        data = dict(event.data)
        self.model(event.type, version)  # known at all?
        latest = self.latest_version(event.type)
        while version < latest:
            step = self._upcasters.get((event.type, version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {event.type} v{version}")
            data = step(data)
            version += 1
        return self.model(event.type, latest).model_validate(data)

    def all_models(self) -> list[type[EventData]]:
        return [self._models[k] for k in sorted(self._models)]

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        out = {}
        for m in self.all_models():
            schema = m.model_json_schema()
            schema["$id"] = m.schema_id()
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            out[f"{m.EVENT_TYPE}.v{m.VERSION}.json"] = schema
        return out

    def export_schemas(self, folder: Path = SCHEMA_DIR) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, schema in self.json_schemas().items():
            path = folder / name
            path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            written.append(path)
        return written

    def stale_schemas(self, folder: Path = SCHEMA_DIR) -> list[str]:
        """Names of schema files that are missing, differ from the models, or are orphans."""
        expected = self.json_schemas()
        problems = []
        for name, schema in expected.items():
            path = folder / name
            if not path.exists() or json.loads(path.read_text()) != schema:
                problems.append(name)
        for path in folder.glob("*.json"):
            if path.name not in expected:
                problems.append(path.name)
        return problems


REGISTRY = EventRegistry()


def load_all() -> EventRegistry:
    """Import every module that registers events, so REGISTRY is complete."""
    import shared.events.care_plans  # noqa: F401
    import shared.events.directory  # noqa: F401
    import shared.events.encounters  # noqa: F401
    import shared.events.journeys  # noqa: F401
    import shared.events.notifications  # noqa: F401
    import shared.events.referrals  # noqa: F401

    return REGISTRY
