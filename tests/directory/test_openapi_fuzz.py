"""Schemathesis against the directory's OpenAPI, in-process over ASGI with a real token on
the real database: whatever it sends, the answer is never a 5xx."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from shared.settings import Settings
from tests.directory.conftest import Provider, create_published, new_provider

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
async def fuzz_provider(directory_client: httpx.AsyncClient, settings: Settings) -> Provider:
    """A registered provider with a published service, so generated requests get past
    "who are you" into the real code paths."""
    p = await new_provider(directory_client, settings)
    await create_published(directory_client, p, id="svc-fuzz-target")
    return p


def test_no_request_gets_a_server_error(fuzz_provider: Provider, infra: Settings) -> None:
    from services.directory.api import build_app

    # an app of its own: schemathesis runs it (and its lifespan) on its own event loop
    app = build_app(infra)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    classes: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(headers=fuzz_provider.headers)
                classes[f"{response.status_code // 100}xx"] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> "
                        f"{response.status_code}: {case.as_curl_command()}"
                    )

            try:
                run()
            except Unsatisfiable:
                # an operation without parameters or body has no invalid input to make
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n".join(failures[:10])
    # the generated requests reached the real code paths, not only the validators
    assert classes["2xx"] >= 20 and classes["4xx"] >= 100, classes
