"""Local stand-ins for the message providers, run by `waymark up` only (part `dev-sinks`):

- a real SMTP server (aiosmtpd) on <api_host>:<api_port_base + 25> that keeps every mail it
  accepts as an .eml file under `<home>/sinks/<instance>/mail/`;
- an HTTP API shaped like GOV.UK Notify's `POST /v2/notifications/sms` on
  <api_host>:<api_port_base + 26>: it checks the bearer JWT the way Notify does (HS256 signed
  with the secret part of the API key, `iss` the service id, `iat` within 30 seconds) and
  the phone number, answers 201 with a Notify-shaped body, and keeps each text as a JSON file
  under `<home>/sinks/<instance>/sms/`.

In an ICS deployment the dispatcher talks to the ICS's SMTP relay and to GOV.UK Notify
instead (WAYMARK_SMTP_HOST, WAYMARK_SMS_API_BASE); nothing here runs there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.heartbeat import write_heartbeat
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)
PART = "dev-sinks"
# a UK mobile number as Notify accepts it: 07xxxxxxxxx or +447xxxxxxxxx (spaces allowed)
UK_MOBILE = re.compile(r"^(?:\+44\s?7|07)\d{3}\s?\d{6}$")


def sink_dir(settings: Settings, kind: str) -> Path:
    d = settings.home / "sinks" / settings.instance / kind
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)  # readers never see half a file


class MailSink:
    """aiosmtpd handler: accept mail for any recipient and keep it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if not isinstance(content, bytes):
            content = content.encode()
        if message_from_bytes(content).get("Subject") is None:
            return "550 a message needs a Subject"
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        header = (
            f"X-Sink-Mail-From: {envelope.mail_from}\r\n"
            f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        _write_atomically(self.folder / name, header + content)
        return f"250 Message accepted for delivery as {name}"


def notify_app(settings: Settings) -> FastAPI:
    """The GOV.UK Notify-shaped SMS API (v2) the local stack's dispatcher sends texts to."""
    app = FastAPI(title="Local GOV.UK Notify-shaped SMS sink")
    folder = sink_dir(settings, "sms")

    def key_parts() -> tuple[str, str]:
        key = settings.sms_api_key_file().read_text().strip()
        return key[-73:-37], key[-36:]  # service id, secret (each a UUID)

    def error(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(
            {"status_code": status, "errors": [{"error": kind, "message": message}]},
            status_code=status,
        )

    @app.post("/v2/notifications/sms")
    async def send_sms(request: Request) -> JSONResponse:
        service_id, secret = key_parts()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error(401, "AuthError", "Unauthorized: authentication token must be provided")
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["iss", "iat"]}
            )
        except jwt.PyJWTError as exc:
            return error(403, "AuthError", f"Invalid token: {exc}")
        if claims["iss"] != service_id or abs(time.time() - float(claims["iat"])) > 30:
            return error(403, "AuthError", "Invalid token: iss or iat not accepted")
        try:
            body: dict[str, Any] = await request.json()
        except ValueError:
            return error(400, "BadRequestError", "body is not JSON")
        phone = str(body.get("phone_number", ""))
        if not UK_MOBILE.match(phone):
            return error(400, "ValidationError", "phone_number Not a UK mobile number")
        if not body.get("template_id") or not isinstance(body.get("personalisation"), dict):
            return error(400, "ValidationError", "template_id and personalisation are required")
        nid = str(uuid.uuid4())
        record = {"id": nid, "received_at": datetime.now(UTC).isoformat(), **body}
        _write_atomically(folder / f"{time.time_ns()}-{nid[:8]}.json", json.dumps(record).encode())
        text = str(body["personalisation"].get("body", ""))
        return JSONResponse(
            {
                "id": nid,
                "reference": body.get("reference"),
                "content": {"body": text, "from_number": "WAYMARK"},
                "uri": f"/v2/notifications/{nid}",
                "template": {
                    "id": body["template_id"],
                    "version": 1,
                    "uri": f"/v2/template/{body['template_id']}",
                },
            },
            status_code=201,
        )

    return app


async def run_sinks(settings: Settings | None = None) -> None:
    from shared.outbox import install_stop_signals

    settings = settings or get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    install_stop_signals(stop)
    loop = asyncio.get_running_loop()
    mail = MailSink(sink_dir(settings, "mail"))
    smtp_server = await loop.create_server(
        lambda: SMTP(mail, hostname="waymark-sink"), settings.api_host, settings.api_port_base + 25
    )
    server = uvicorn.Server(
        uvicorn.Config(
            notify_app(settings),
            host=settings.api_host,
            port=settings.api_port_base + 26,
            log_level="warning",
            access_log=False,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    api = asyncio.create_task(server.serve())
    heartbeat = settings.run_dir / f"{PART}.alive"
    try:
        while not stop.is_set():
            if server.started:
                write_heartbeat(heartbeat)
            try:
                await asyncio.wait_for(stop.wait(), 2)
            except TimeoutError:
                pass
    finally:
        server.should_exit = True
        await api
        smtp_server.close()
        await smtp_server.wait_closed()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiosmtpd logs each SMTP command at INFO, recipients' addresses (people's) included;
    # what was received is kept in the sink's files, the log gets only its warnings
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(run_sinks())


if __name__ == "__main__":
    main()
