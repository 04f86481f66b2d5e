"""Fixtures of the FHIR channel's tests: a registered FHIR source of its own per test, and the
headers of a token its client would present."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from services.integration.models import SourceSystem
from shared.settings import Settings
from tests.conftest import auth
from tests.integration.conftest import NewSource


@dataclass(frozen=True)
class Sender:
    source: SourceSystem
    headers: dict[str, str]


@pytest.fixture
def fhir_sender(new_source: NewSource, infra: Settings) -> Callable[..., Awaitable[Sender]]:
    async def make(org_code: str = "RX1", active: bool = True) -> Sender:
        source = await new_source(channel="fhir", org_code=org_code, active=active)
        headers = auth(
            infra, role="partner", org=source.org_code, ics=infra.ics, sub=source.client_id
        )
        return Sender(source, {**headers, "Content-Type": "application/fhir+json"})

    return make
