"""OpenAPI names that must not move with the code.

FastAPI names a response schema by its class name, unless two schemas share it: then by
module and name (`services__notifications__webhook_schemas__DeliveryOut`). Two of ours do
(a message's deliveries and a webhook's), and the names they were published under are part
of the API: clients generate code from them. `published_as` keeps such a model's name where
it was first defined, wherever the model lives now."""

from __future__ import annotations

import sys

from pydantic import BaseModel


def published_as(model: type[BaseModel], module: str) -> None:
    """Name `model` in OpenAPI as if it were defined in `module` (call it right after the
    class, at module level: its annotations are resolved in its own module's namespace)."""
    namespace = dict(vars(sys.modules[model.__module__]))
    model.__module__ = module
    model.model_rebuild(force=True, _types_namespace=namespace)
