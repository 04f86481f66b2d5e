"""The journeys bridge names services as the directory lists them (issue #15: "the Specialist
Pain Clinic", not "the pain management programme"), asking the running directory API with the
journeys' own service credential."""

from __future__ import annotations

import time
import uuid

from tests.directory.conftest import create_published, new_provider
from workflows.journeys.bridge import ServiceNames


async def test_a_published_service_is_named_and_an_unknown_one_is_not(
    running_apps, directory_client
):  # type: ignore[no-untyped-def]
    provider = await new_provider(directory_client, running_apps)
    service = await create_published(
        directory_client,
        provider,
        name="Specialist Pain Clinic",
        category="pain_management_programme",
    )
    names = ServiceNames(running_apps)
    try:
        assert await names.name(service["id"]) == "Specialist Pain Clinic"
        assert await names.name(f"svc-{uuid.uuid4().hex[:12]}") is None  # not listed
        # cached: a second ask does not go to the directory
        names.cache[service["id"]] = ("Cached name", names.cache[service["id"]][1])
        assert await names.name(service["id"]) == "Cached name"
    finally:
        await names.close()


async def test_a_directory_that_cannot_answer_gives_no_name_and_is_asked_again_soon(infra):  # type: ignore[no-untyped-def]
    s = infra.model_copy(update={"api_urls": {"directory": "http://127.0.0.1:9"}})
    names = ServiceNames(s)
    try:
        assert await names.name("svc-anything") is None
        _, until = names.cache["svc-anything"]
        assert until - time.monotonic() <= ServiceNames.RETRY
    finally:
        await names.close()
