"""The operators' Temporal codec server (workflows/codec_server.py), in-process on the real
database: who may decode, what is audited, the Temporal codec protocol and CORS for the UI."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from google.protobuf import json_format
from sqlalchemy import text
from temporalio.api.common.v1 import Payload

from shared.db import unit_of_work
from shared.settings import Settings
from shared.temporal_codec import ENCODING, KEY_ID, EncryptionCodec, KeyringFile, read_keyring
from tests.conftest import auth
from workflows.codec_server import build_app

SECRET = b'{"patient_id": "pt_codecserver", "instrument": "PHQ-9", "band": "severe"}'


@pytest.fixture(scope="module")
async def server(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(infra)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://codec") as c:
            yield c


async def sealed(s: Settings) -> list[dict[str, object]]:
    codec = EncryptionCodec(KeyringFile(s.temporal_codec_keys_file()))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=SECRET)
    return [json_format.MessageToDict(p) for p in await codec.encode([plain])]


async def audit_rows(journey_sessions, actor: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    async with unit_of_work(journey_sessions) as session:
        rows = await session.exec(
            text(
                "SELECT action, resource_id, detail FROM audit_log WHERE actor = :a ORDER BY at"
            ).bindparams(a=actor)
        )
        return [tuple(r) for r in rows.all()]


def admin(s: Settings, sub: str, ics: str | None = None) -> dict[str, str]:
    return auth(s, role="admin", org=s.ics, ics=ics or s.ics, sub=sub)


class TestWhoMayDecode:
    async def test_without_a_token_is_a_401_problem(self, server, infra) -> None:  # type: ignore[no-untyped-def]
        r = await server.post("/decode", json={"payloads": await sealed(infra)})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert b"severe" not in r.content

    @pytest.mark.parametrize("role", ["clinician", "coordinator", "service_staff", "ics_lead"])
    async def test_other_roles_get_a_403_problem_and_the_refusal_is_audited(
        self, server, infra, journey_sessions, role: str
    ) -> None:  # type: ignore[no-untyped-def]
        sub = f"{role}-{uuid.uuid4().hex[:6]}"
        r = await server.post(
            "/decode",
            json={"payloads": await sealed(infra)},
            headers={**auth(infra, role=role, org="GP-1", ics=infra.ics, sub=sub)},
        )
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
        assert b"severe" not in r.content and b"PHQ-9" not in r.content
        rows = await audit_rows(journey_sessions, sub)
        assert [(a, ns) for a, ns, _ in rows] == [("decode-denied", infra.temporal_namespace)]

    async def test_an_admin_of_another_ics_gets_a_403(self, server, infra) -> None:  # type: ignore[no-untyped-def]
        r = await server.post(
            "/decode",
            json={"payloads": await sealed(infra)},
            headers=admin(infra, "other-admin", ics="ICS-OTHER"),
        )
        assert r.status_code == 403

    async def test_an_admin_of_the_ics_decodes_and_the_decode_is_audited(
        self, server, infra, journey_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        sub = f"ics-admin-{uuid.uuid4().hex[:6]}"
        payloads = await sealed(infra)
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": ""}
        r = await server.post(
            "/decode",
            json={"payloads": [*payloads, plain]},
            headers={**admin(infra, sub), "X-Namespace": "waymark-ops"},
        )
        assert r.status_code == 200, r.text
        decoded = [json_format.ParseDict(p, Payload()) for p in r.json()["payloads"]]
        assert decoded[0].data == SECRET and decoded[0].metadata["encoding"] == b"json/plain"
        assert decoded[1] == json_format.ParseDict(plain, Payload())  # plaintext passes through
        kid = read_keyring(infra.temporal_codec_keys_file()).current
        assert await audit_rows(journey_sessions, sub) == [
            ("decode", "waymark-ops", f"2 payload(s), 1 key(s): {kid}")
        ]


class TestTheProtocol:
    async def test_encode_then_decode_round_trips_under_the_current_key(
        self, server, infra
    ) -> None:  # type: ignore[no-untyped-def]
        h = admin(infra, "ops")
        raw = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}}
        raw["data"] = base64.b64encode(SECRET).decode()  # type: ignore[assignment]
        enc = await server.post("/encode", json={"payloads": [raw]}, headers=h)
        assert enc.status_code == 200
        [p] = [json_format.ParseDict(x, Payload()) for x in enc.json()["payloads"]]
        assert p.metadata["encoding"] == ENCODING and SECRET not in p.data
        assert p.metadata[KEY_ID].decode() == read_keyring(infra.temporal_codec_keys_file()).current
        dec = await server.post("/decode", json=enc.json(), headers=h)
        assert dec.json() == {"payloads": [raw]}

    @pytest.mark.parametrize(
        "payloads",
        [
            [{"metadata": {"encoding": "not base64!"}}],
            [{"data": 5}],
            [{"unknown_field": "x"}],
            [{"metadata": {"encoding": base64.b64encode(ENCODING).decode(), KEY_ID: "eA=="}}],
        ],
    )
    async def test_what_is_not_a_readable_payload_is_a_422_problem(
        self, server, infra, payloads
    ) -> None:  # type: ignore[no-untyped-def]
        r = await server.post("/decode", json={"payloads": payloads}, headers=admin(infra, "ops"))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")

    async def test_a_tampered_payload_is_a_422_not_garbage(self, server, infra) -> None:  # type: ignore[no-untyped-def]
        [p] = await sealed(infra)
        data = bytearray(base64.b64decode(p["data"]))  # type: ignore[arg-type]
        data[-1] ^= 1
        p["data"] = base64.b64encode(bytes(data)).decode()
        r = await server.post("/decode", json={"payloads": [p]}, headers=admin(infra, "ops"))
        assert r.status_code == 422 and "failed authentication" in r.json()["detail"]


class TestCors:
    async def test_the_temporal_ui_may_call_it_from_the_browser(self, server, infra) -> None:  # type: ignore[no-untyped-def]
        origin = f"http://localhost:{infra.temporal_ui_port}"
        r = await server.options(
            "/decode",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        refused = await server.post(
            "/decode", json={"payloads": []}, headers={"Origin": origin}
        )  # a 401 the UI can read
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin

    async def test_another_origin_is_not_allowed(self, server) -> None:  # type: ignore[no-untyped-def]
        r = await server.options(
            "/decode",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
