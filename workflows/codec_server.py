"""The codec server for authorised operators: the Temporal UI's (and CLI's) remote codec
endpoint, so an ICS admin can read the journeys' encrypted histories in plain text.

    python -m workflows.codec_server        # http://127.0.0.1:<api_port_base + 41>

It speaks the Temporal codec server protocol: `POST /decode` and `POST /encode` with
`{"payloads": [<Payload as protobuf JSON>...]}`, answering the same shape; CORS lets the
Temporal UI's origin (`temporal_codec_cors_origins`) call it from the browser. Every call
carries a bearer token (the UI's "pass access token", the CLI's `--codec-auth`); only an admin
of the deployment's ICS may use it (`Capability.TEMPORAL_CODEC`). Every decode is audited in
the journeys schema's audit log, and so is every refusal; refusals are problem+json.

It is not started by `waymark up`: an operator runs it when needed (README "Temporal payload
encryption").
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Header, Request
from google.protobuf import json_format
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware
from temporalio.api.common.v1 import Payload

from shared.access import Capability, Principal, Relationship, permits
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.db import unit_of_work
from shared.errors import Forbidden, ValidationFailed
from shared.settings import Settings, get_settings
from shared.temporal_codec import (
    EncryptionCodec,
    KeyringFile,
    PayloadDecryptError,
    UnknownKeyError,
)
from shared.web import SessionDep, client_ip, create_app

logger = logging.getLogger(__name__)
router = APIRouter()
#: payloads in one call: a page of history in the UI is far fewer
MAX_PAYLOADS = 1000


class PayloadsBody(BaseModel):
    """Temporal's `Payloads` as protobuf JSON: metadata values and data in base64."""

    payloads: list[dict[str, Any]] = Field(max_length=MAX_PAYLOADS)


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _codec(request: Request) -> EncryptionCodec:
    state = request.app.state
    if getattr(state, "codec", None) is None:
        state.codec = EncryptionCodec(KeyringFile(_settings(request).temporal_codec_keys_file()))
    codec: EncryptionCodec = state.codec
    return codec


def _parse(body: PayloadsBody) -> list[Payload]:
    out = []
    for i, raw in enumerate(body.payloads):
        try:
            out.append(json_format.ParseDict(raw, Payload()))
        except (json_format.ParseError, TypeError, ValueError) as exc:
            raise ValidationFailed(
                f"payloads[{i}] is not a Temporal payload (protobuf JSON: metadata and data "
                f"in base64): {exc}"
            ) from None
    return out


def _render(payloads: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


async def _operator(
    request: Request, principal: Principal, action: str, namespace: str
) -> Principal:
    """An admin of the deployment's ICS, or a refusal, audited in a transaction of its own
    (the request's rolls back with the error)."""
    settings = _settings(request)
    same_ics = [Relationship.SAME_ICS] if principal.ics == settings.ics else []
    if permits(principal, Capability.TEMPORAL_CODEC, same_ics):
        return principal
    reason = "reading or writing journey payloads needs the admin role of this ICS"
    async with unit_of_work(request.app.state.sessions) as session:
        record_audit(
            session,
            principal=principal,
            action=f"{action}-denied",
            resource_type="temporal_payloads",
            resource_id=namespace,
            client_ip=client_ip(request),
            detail=reason,
        )
    raise Forbidden(reason)


def _namespace(request: Request, header: str | None) -> str:
    return (header or _settings(request).temporal_namespace)[:200]


@router.post("/decode", tags=["codec"])
async def decode(
    body: PayloadsBody,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    x_namespace: str | None = Header(default=None),
) -> dict[str, Any]:
    """Decrypt payloads (the UI sends a history's, a page at a time); audited."""
    namespace = _namespace(request, x_namespace)
    await _operator(request, principal, "decode", namespace)
    payloads = _parse(body)
    codec = _codec(request)
    try:
        plain = await codec.decode(payloads)
    except (UnknownKeyError, PayloadDecryptError) as exc:
        raise ValidationFailed(str(exc)) from None
    kids = sorted({k for p in payloads if (k := codec.key_id(p)) is not None})
    record_audit(
        session,
        principal=principal,
        action="decode",
        resource_type="temporal_payloads",
        resource_id=namespace,
        client_ip=client_ip(request),
        detail=f"{len(payloads)} payload(s), {len(kids)} key(s): {', '.join(kids) or 'none'}",
    )
    return _render(plain)


@router.post("/encode", tags=["codec"])
async def encode(
    body: PayloadsBody,
    request: Request,
    principal: CurrentPrincipal,
    x_namespace: str | None = Header(default=None),
) -> dict[str, Any]:
    """Encrypt payloads with the current key (the UI's signal or query input)."""
    await _operator(request, principal, "encode", _namespace(request, x_namespace))
    return _render(await _codec(request).encode(_parse(body)))


def build_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()
    app = create_app(
        "journeys",
        title="Waymark Temporal codec server",
        description="Decrypts and encrypts the journeys' Temporal payloads for authorised "
        "operators (the Temporal UI's and CLI's remote codec endpoint).",
        settings=s,
    )
    app.include_router(router)
    # outermost, so a preflight is answered before authentication and refusals carry CORS
    app.add_middleware(
        CORSMiddleware,
        allow_origins=s.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["authorization", "content-type", "x-namespace"],
        allow_credentials=True,
    )
    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = get_settings()
    uvicorn.run(build_app(s), host=s.api_host, port=s.codec_server_port, access_log=False)


if __name__ == "__main__":
    main()
