"""A real partner endpoint for the webhook tests: a uvicorn server in the test process whose
hooks verify every request's Standard Webhooks signature with the reference library, can fail
or hold requests, and record everything they receive."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.cloudevents_support import http_problem
from tests.helpers import eventually

# --- the receiver ---------------------------------------------------------------------------


@dataclass
class Got:
    webhook_id: str
    signatures: list[str]
    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    at: float  # monotonic, on arrival
    verified_by: list[int]  # indices into the hook's secrets that verify this request
    concerns_org: bool
    snapshot: dict[str, tuple[int, int]]  # every hook's (finished, in flight) on arrival
    #: why the request is not a structured-mode CloudEvent (the SDK's from_http and the HTTP
    #: binding's content type), or None
    not_cloudevent: str | None = None
    status: int = 0


@dataclass
class Hook:
    """One partner's endpoint: how it answers, and everything it received."""

    org: str
    secrets: list[str] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to the first N attempts of each webhook-id
    always_fail: bool = False
    hold: asyncio.Event | None = None  # hold each request until set (at most hold_max)
    hold_max: float = 2.8
    got: list[Got] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    finished: int = 0

    def accepted(self) -> list[Got]:
        return [g for g in self.got if 200 <= g.status < 300]

    def accepted_referrals(self) -> list[str]:
        return sorted(g.payload["data"]["referral_id"] for g in self.accepted())

    def by_webhook_id(self) -> dict[str, list[Got]]:
        out: dict[str, list[Got]] = defaultdict(list)
        for g in self.got:
            out[g.webhook_id].append(g)
        return out

    def not_cloudevents(self) -> list[tuple[str, str]]:
        """(webhook-id, why) of every request a CloudEvents receiver could not read."""
        return [(g.webhook_id, g.not_cloudevent) for g in self.got if g.not_cloudevent]

    def strangers(self) -> list[Got]:
        """Requests about events that do not concern this partner's organisation."""
        return [g for g in self.got if not g.concerns_org]


class Receiver:
    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.base = ""

    def hook(self, name: str, org: str, **kw: Any) -> Hook:
        self.hooks[name] = Hook(org=org, **kw)
        return self.hooks[name]

    def url(self, name: str) -> str:
        return f"{self.base}/hooks/{name}"

    async def handle(self, request: Request) -> Response:
        hook = self.hooks.get(request.path_params["name"])
        if hook is None:
            return Response(status_code=404)
        body = await request.body()
        headers = dict(request.headers)
        verified = []
        for i, secret in enumerate(hook.secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except WebhookVerificationError:
                pass
        payload = json.loads(body)
        data = payload.get("data", {})
        wid = headers.get("webhook-id", "")
        seen = sum(1 for g in hook.got if g.webhook_id == wid)
        got = Got(
            webhook_id=wid,
            signatures=headers.get("webhook-signature", "").split(" "),
            payload=payload,
            body=body,
            headers=headers,
            at=time.monotonic(),
            verified_by=verified,
            concerns_org=hook.org in (data.get("from_org"), data.get("to_org")),
            snapshot={n: (h.finished, h.in_flight) for n, h in self.hooks.items()},
            not_cloudevent=http_problem(headers, body),
        )
        hook.got.append(got)
        hook.in_flight += 1
        hook.max_in_flight = max(hook.max_in_flight, hook.in_flight)
        try:
            status = 200
            if hook.hold is not None:
                try:
                    await asyncio.wait_for(hook.hold.wait(), hook.hold_max)
                except TimeoutError:
                    status = 503
            if not verified:
                status = 400
            elif hook.always_fail or seen < hook.fail_first:
                status = 500
            got.status = status
            return Response(b"no thanks" if status >= 300 else b"ok", status_code=status)
        finally:
            hook.in_flight -= 1
            hook.finished += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/hooks/{name}", rec.handle, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10, interval=0.05)
    rec.base = f"http://127.0.0.1:{port}"
    yield rec
    server.should_exit = True
    await task
