"""Sends people's messages (email, SMS, in-app). SCAFFOLD: not built yet (being written now)."""

from __future__ import annotations

import asyncio

from shared.settings import Settings


class MessageSender:
    name = "message_sender"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    async def create(cls, settings: Settings) -> MessageSender:
        return cls(settings)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        await stop.wait()
