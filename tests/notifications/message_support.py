"""What the message delivery tests share: the running stack's APIs, what the dev sinks received
(mails as .eml, texts as JSON), referrals and care plans made over HTTP, the delivery log."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import create_care_plan, eventually, referral_body
from tests.referrals.support import Parties, step


def running(s: Settings, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.api_port(service)}", timeout=60)


def coordinator(s: Settings) -> dict[str, str]:
    return auth(s, role="coordinator", org="ICB-TEST", ics=s.ics)


def unique_email(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.nhs.uk"


def unique_mobile() -> str:
    """A number in Ofcom's range for drama (07700 900000-900999) would repeat too soon; any
    07700 number is fine for the local sink."""
    return f"07700 {random.randrange(100000, 999999)}"


def international(mobile: str) -> str:
    return "+44" + mobile.replace(" ", "")[1:]


# --- what the sinks received ---------------------------------------------------------------------


@dataclass
class Mail:
    path: Path
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["X-Sink-Rcpt-To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str | None:
        part = self.message.get_body(preferencelist=("html",))
        return (
            str(part.get_content())
            if part is not None and part.get_content_type() == "text/html"
            else None
        )


def mails_to(s: Settings, address: str) -> list[Mail]:
    folder = s.home / "sinks" / s.instance / "mail"
    out = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        if address in str(msg.get("X-Sink-Rcpt-To", "")):
            out.append(Mail(path, msg))
    return out


def texts_to(s: Settings, mobile: str) -> list[dict[str, Any]]:
    folder = s.home / "sinks" / s.instance / "sms"
    number = international(mobile) if mobile.startswith("0") else mobile
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        record = json.loads(path.read_text())
        if record.get("phone_number") == number:
            out.append(record)
    return out


async def one_mail(s: Settings, address: str, timeout: float = 120) -> Mail:
    [mail] = await eventually(lambda: mails_to(s, address), timeout=timeout)
    return mail


# --- referrals and care plans over HTTP ----------------------------------------------------------


async def new_referral(s: Settings, parties: Parties, **overrides: Any) -> dict[str, Any]:
    async with running(s, "referrals") as http:
        body = referral_body(
            to_service_id=parties.service.id, to_org=parties.receiver_org, **overrides
        )
        r = await http.post("/referrals", json=body, headers=parties.referrer(s))
        assert r.status_code == 201, r.text
        referral = r.json()
        referral["_nhs_number"] = body["patient"]["nhs_number"]
        return referral


async def move(
    s: Settings,
    parties: Parties,
    referral: dict[str, Any],
    *actions: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    async with running(s, "referrals") as http:
        for action in actions:
            nhs = referral.get("_nhs_number")
            referral = await step(
                http, s, parties, referral, action, **({"body": body} if body is not None else {})
            )
            referral["_nhs_number"] = nhs
    return referral


async def new_care_plan(
    s: Settings,
    parties: Parties,
    nhs_number: str,
    *,
    communication: dict[str, Any],
    carers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    async with running(s, "care_plans") as http:
        # the referral just made reaches care plans through Kafka: the referrer's relationship
        r = await create_care_plan(
            http,
            parties.referrer(s),
            {
                "nhs_number": nhs_number,
                "reason": "first conversation",
                "content": {
                    "what_matters_to_me": "Walking the dog again.",
                    "communication": communication,
                    "carers": carers or [],
                },
            },
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


async def set_preferences(s: Settings, parties: Parties, **prefs: Any) -> dict[str, Any]:
    async with running(s, "notifications") as http:
        r = await http.put(
            "/preferences/me", json=prefs, headers={**parties.referrer(s), "If-Match": 'W/"0"'}
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


# --- the delivery log ----------------------------------------------------------------------------


async def messages_of(s: Settings, referral_id: str) -> list[dict[str, Any]]:
    async with running(s, "notifications") as http:
        r = await http.get(
            "/messages", params={"referral_id": referral_id, "limit": 200}, headers=coordinator(s)
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


async def message_when(
    s: Settings,
    referral_id: str,
    *,
    template: str,
    audience: str,
    status: str | tuple[str, ...],
    timeout: float = 120,
) -> dict[str, Any]:
    """The message, once the delivery log shows it in `status`."""
    wanted = (status,) if isinstance(status, str) else status

    async def check() -> dict[str, Any] | None:
        for m in await messages_of(s, referral_id):
            if m["template"] == template and m["audience"] == audience and m["status"] in wanted:
                return m
        return None

    return await eventually(check, timeout=timeout, interval=0.5)  # type: ignore[no-any-return]
