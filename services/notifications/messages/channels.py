"""The ways a message leaves Waymark: email over SMTP, SMS through a GOV.UK Notify-shaped
HTTP API, and the in-app inbox.

Each `send` returns the provider's reference (the SMTP server's queue id, Notify's
notification id, the inbox item id) or raises `PermanentFailure` (retrying cannot help: a
refused address, a 4xx from Notify) or `TransientFailure` (a network error, a 5xx, a 429:
try again later).
"""

from __future__ import annotations

import re
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
import httpx
import jwt
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.messages import repository
from shared.settings import Settings


class ChannelFailure(Exception):
    pass


class PermanentFailure(ChannelFailure):
    """Trying again cannot succeed."""


class TransientFailure(ChannelFailure):
    """Worth trying again later."""


# --- email --------------------------------------------------------------------------------------

# "250 2.0.0 Ok: queued as 4F2C81A0" (Postfix), "250 Message accepted for delivery as X"
_QUEUE_ID = re.compile(r"(?:queued as|accepted for delivery as|id=)\s*<?([\w.@+-]+)>?", re.I)


class EmailChannel:
    """Mail as text/plain, with an HTML alternative (the same words) when one is given."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(
        self, *, to: str, subject: str, body: str, html: str | None, reference: str, language: str
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(idstring=reference, domain="waymark.invalid")
        msg["Content-Language"] = language
        msg["X-Waymark-Delivery"] = reference
        # an automatic message: no out-of-office replies (RFC 3834)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    async def send(
        self,
        *,
        to: str,
        subject: str,
        body: str,
        html: str | None,
        reference: str,
        language: str = "en",
    ) -> str:
        s = self.settings
        msg = self.build(
            to=to, subject=subject, body=body, html=html, reference=reference, language=language
        )
        host, port = s.smtp_target
        try:
            errors, response = await aiosmtplib.send(
                msg,
                hostname=host,
                port=port,
                start_tls=s.smtp_starttls,
                username=s.smtp_username or None,
                password=s.smtp_password or None,
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            message = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(c >= 500 for c in codes):
                raise PermanentFailure(f"the mail server refused the address: {message}") from None
            raise TransientFailure(f"the mail server deferred the address: {message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = PermanentFailure if exc.code >= 500 else TransientFailure
            raise kind(f"the mail server answered {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientFailure(
                f"could not reach the mail server {host}:{port}: {type(exc).__name__}: {exc}"
            ) from None
        if errors:
            # one recipient per message, so any refusal is this one's
            raise PermanentFailure(f"the mail server refused the address: {errors}")
        m = _QUEUE_ID.search(response or "")
        return m.group(1) if m else str(msg["Message-ID"]).strip("<>")


# --- SMS (GOV.UK Notify v2) -----------------------------------------------------------------------


def notify_key_parts(api_key: str) -> tuple[str, str]:
    """A Notify API key is "<key name>-<service id>-<secret>", both ids UUIDs."""
    key = api_key.strip()
    service_id, secret = key[-73:-37], key[-36:]
    try:
        uuid.UUID(service_id)
        uuid.UUID(secret)
    except ValueError:
        raise PermanentFailure(
            "the SMS API key is not in GOV.UK Notify's format (<name>-<service id>-<secret key>)"
        ) from None
    return service_id, secret


def notify_token(api_key: str, *, now: float | None = None) -> str:
    """The bearer token Notify expects: a JWT (HS256) with the service id as `iss` and the
    time as `iat`, signed with the key's secret."""
    service_id, secret = notify_key_parts(api_key)
    return jwt.encode(
        {"iss": service_id, "iat": int(now if now is not None else time.time())},
        secret,
        algorithm="HS256",
    )


def _notify_errors(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        return "; ".join(f"{e.get('error')}: {e.get('message')}" for e in body["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:300]


class SmsChannel:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def send(self, *, to: str, body: str, reference: str) -> str:
        s = self.settings
        try:
            api_key = s.sms_api_key_file().read_text()
        except OSError as exc:
            raise TransientFailure(f"the SMS API key cannot be read: {exc}") from None
        token = notify_token(api_key)
        url = f"{s.sms_base_url.rstrip('/')}/v2/notifications/sms"
        try:
            r = await self.http.post(
                url,
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "phone_number": to,
                    "template_id": s.sms_template_id,
                    "personalisation": {"body": body},
                    "reference": reference,
                },
                timeout=15,
            )
        except httpx.HTTPError as exc:
            raise TransientFailure(
                f"could not reach the SMS provider: {type(exc).__name__}: {exc}"
            ) from None
        if r.status_code == 201 or r.status_code == 200:
            try:
                return str(r.json()["id"])
            except (ValueError, KeyError, TypeError):
                raise TransientFailure("the SMS provider's answer has no notification id") from None
        detail = f"the SMS provider answered {r.status_code}: {_notify_errors(r)}"
        if r.status_code == 429 or r.status_code >= 500:
            raise TransientFailure(detail)
        raise PermanentFailure(detail)


# --- the in-app inbox -----------------------------------------------------------------------------


class InAppChannel:
    """An item in a user's (`user:<id>`) or a team's (`org:<code>`) inbox, written in the
    caller's transaction with its delivery row, so it is there exactly once."""

    async def send(
        self,
        session: AsyncSession,
        *,
        owner: str,
        org: str,
        message_id: str,
        subject: str,
        body: str,
        variant: str,
    ) -> str | None:
        return await repository.deliver_inbox_item(
            session,
            owner=owner,
            org=org,
            message_id=message_id,
            subject=subject,
            body=body,
            variant=variant,
        )
