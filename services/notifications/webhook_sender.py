"""Sends partner webhook deliveries. SCAFFOLD: not built yet (being written now)."""

from __future__ import annotations

import asyncio

from shared.settings import Settings


class WebhookSender:
    name = "webhook_sender"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    async def create(cls, settings: Settings) -> WebhookSender:
        return cls(settings)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        await stop.wait()
