"""Issue #14 finding 6, smaller hardening, each over every service's app in-process on the real
database:

- a control character (NUL, any other C0, DEL) in a path segment or a query key or value is a
  400 problem (a FHIR OperationOutcome under /fhir) on every route, before the route runs;
- a datetime in a query that cannot be put in UTC (year 9999 at -23:59) is a 4xx, never a 500;
- the API docs load no script or style from another origin, serve their assets themselves,
  and are off in production unless asked for;
- the live alert stream has a cap per user and in total (429 with Retry-After), and a client
  that goes away gives its place back.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.settings import Settings
from shared.web import create_app
from tests.conftest import auth
from tests.notifications.alert_support import sse_events
from tests.security.conftest import Api
from tests.security.support import FHIR_JSON, media_type, operations, problem_of

SERVICES = ["referrals", "directory", "care_plans", "notifications"]

#: what the guard must refuse, as a client puts it on the wire (percent-encoded)
CONTROL_CHARACTERS = ["%00", "%01", "%09", "%0A", "%0D", "%1B", "%1F", "%7F"]


def _check_400(path: str, r: httpx.Response) -> str | None:
    if r.status_code != 400:
        return f"{r.status_code} (not 400): {r.text[:200]}"
    if path.startswith("/fhir/"):
        body = r.json()
        if media_type(r) != FHIR_JSON or body.get("resourceType") != "OperationOutcome":
            return f"not a FHIR OperationOutcome: {r.headers.get('content-type')} {r.text[:200]}"
        return None
    try:
        problem_of(r, 400)
    except AssertionError as exc:
        return f"not a 400 problem: {exc}"
    return None


class TestControlCharacters:
    @pytest.mark.parametrize("service", SERVICES)
    async def test_a_nul_in_any_path_parameter_or_query_is_a_400_on_every_route(
        self, apis: dict[str, Api], settings: Settings, service: str
    ) -> None:
        api = apis[service]
        headers = {
            **auth(settings, role=["coordinator", "clinician", "admin"], org=settings.ics),
            "Accept": "application/json",
        }
        failures: list[str] = []
        checks = 0
        for op in operations(service, api.app):
            urls = [op.url({p: "x%00y" for p in op.params})] if op.params else []
            urls.append(op.url() + "?q=x%00y")
            urls.append(op.url() + "?x%00y=1")
            for url in urls:
                body = {} if op.method in ("POST", "PUT", "PATCH") else None
                r = await api.client.request(op.method, url, headers=headers, json=body)
                checks += 1
                if (why := _check_400(op.path, r)) is not None:
                    failures.append(f"{op.key} {url}: {why}")
        print(f"\n{service}: {checks} requests with a NUL, all 400")
        assert not failures, "\n".join(failures)

    @pytest.mark.parametrize(
        "path",
        [
            "/alerts/x%00y",
            "/alerts/x%00y/acknowledge",
            "/inbox/x%00y/read",
            "/dashboard/alerts/x%00y",
        ],
    )
    async def test_the_reported_notifications_routes(
        self, apis: dict[str, Api], settings: Settings, path: str
    ) -> None:
        headers = auth(settings, role="coordinator", org=settings.ics)
        method = "GET" if path.count("/") == 2 or path.startswith("/dashboard") else "POST"
        r = await apis["notifications"].client.request(method, path, headers=headers)
        body = problem_of(r, 400)
        assert "control character" in body["detail"]

    async def test_the_reported_care_plan_route(
        self, apis: dict[str, Api], settings: Settings
    ) -> None:
        r = await apis["care_plans"].client.get(
            "/patients/x%00y/care-plan", headers=auth(settings, role="clinician", org="GP-A")
        )
        problem_of(r, 400)

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS)
    async def test_every_control_character_is_refused_in_path_key_and_value(
        self, apis: dict[str, Api], char: str
    ) -> None:
        client = apis["directory"].client
        for url in (
            f"/services/a{char}b",
            f"/health?a=b{char}",
            f"/health?a{char}=b",
            f"/health?a=1&b={char}",
        ):
            problem_of(await client.get(url), 400)

    async def test_the_fhir_routes_answer_an_operation_outcome(
        self, apis: dict[str, Api], settings: Settings
    ) -> None:
        r = await apis["referrals"].client.get(
            "/fhir/ServiceRequest/x%00y", headers=auth(settings, role="clinician", org="GP-A")
        )
        assert r.status_code == 400 and media_type(r) == FHIR_JSON
        assert r.json()["resourceType"] == "OperationOutcome"

    async def test_ordinary_text_still_passes(
        self, apis: dict[str, Api], settings: Settings
    ) -> None:
        # spaces, accents, emoji, a plus and percent-encoded slashes are not control characters
        r = await apis["directory"].client.get(
            "/services",
            params={"q": "café yoga + back 💪 / 50%"},
            headers=auth(settings, role="clinician", org="GP-A"),
        )
        assert r.status_code == 200, r.text
        assert (await apis["directory"].client.get("/health?x=%C3%A9")).status_code == 200


class TestQueryDatetimes:
    @pytest.mark.parametrize(
        "value",
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999-00:01",
        ],
    )
    async def test_an_oruk_modified_after_out_of_range_is_a_400(
        self, apis: dict[str, Api], settings: Settings, value: str
    ) -> None:
        # the ORUK feed answers every bad query value 400 (issue #19)
        r = await apis["directory"].client.get(
            "/oruk/services",
            params={"modified_after": value},
            headers=auth(settings, role="clinician", org="GP-A"),
        )
        body = problem_of(r, 400)
        assert "range" in body["detail"]

    async def test_an_oruk_modified_after_in_range_still_works(
        self, apis: dict[str, Api], settings: Settings
    ) -> None:
        r = await apis["directory"].client.get(
            "/oruk/services",
            params={"modified_after": "2000-01-01T00:00:00+05:00"},
            headers=auth(settings, role="clinician", org="GP-A"),
        )
        assert r.status_code == 200, r.text

    @pytest.mark.parametrize("param", ["raised_after", "raised_before"])
    @pytest.mark.parametrize("path", ["/alerts", "/alerts/counts"])
    async def test_the_alert_inbox_datetimes_out_of_range_are_a_422(
        self, apis: dict[str, Api], settings: Settings, param: str, path: str
    ) -> None:
        r = await apis["notifications"].client.get(
            path,
            params={param: "9999-12-31T23:59:59-23:59"},
            headers=auth(settings, role="coordinator", org=settings.ics),
        )
        problem_of(r, 422)

    async def test_every_datetime_query_parameter_of_every_api_is_checked(
        self, apis: dict[str, Api], settings: Settings
    ) -> None:
        """Whatever datetime query parameters the APIs grow, an out-of-range one is a 4xx."""
        headers = auth(settings, role=["coordinator", "clinician", "admin"], org=settings.ics)
        failures, seen = [], 0
        for service in SERVICES:
            api = apis[service]
            spec = api.app.openapi()
            for path, item in spec["paths"].items():
                for method, op in item.items():
                    for p in op.get("parameters", []):
                        schema = p.get("schema", {})
                        kinds = [schema] + schema.get("anyOf", [])
                        if p["in"] != "query" or not any(
                            k.get("format") == "date-time" for k in kinds
                        ):
                            continue
                        seen += 1
                        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: "x", path)  # noqa: B023 - used at once
                        r = await api.client.request(
                            method.upper(),
                            url,
                            headers=headers,
                            params={p["name"]: "9999-12-31T23:59:59-23:59"},
                        )
                        if not 400 <= r.status_code < 500:
                            failures.append(
                                f"{service} {method} {path} {p['name']}: "
                                f"{r.status_code} {r.text[:200]}"
                            )
        assert seen >= 3  # modified_after, raised_after, raised_before
        assert not failures, "\n".join(failures)


# --- the API docs ---------------------------------------------------------------------------

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)
URL_IN_SCRIPT = re.compile(r"""["'](https?://[^"']+)["']""")


class TestDocs:
    @pytest.mark.parametrize("service", SERVICES)
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    async def test_the_docs_name_no_other_origin_and_serve_their_own_assets(
        self, apis: dict[str, Api], service: str, page: str
    ) -> None:
        client = apis[service].client
        r = await client.get(page)
        assert r.status_code == 200 and media_type(r) == "text/html", r.text[:300]
        assert not EXTERNAL.search(r.text), EXTERNAL.findall(r.text)
        assert not URL_IN_SCRIPT.findall(r.text), URL_IN_SCRIPT.findall(r.text)
        assets = [a for a in ASSET.findall(r.text) if not a.startswith("data:")]
        assert len(assets) >= 2 if page == "/docs" else len(assets) >= 1, r.text
        for asset in assets:
            got = await client.get(asset)
            assert got.status_code == 200, asset
            assert got.content, asset
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp

    async def test_the_docs_are_off_in_production_unless_enabled(self, settings: Settings) -> None:
        for mode, enabled, want in [
            ("production", None, 404),
            ("production", True, 200),
            ("local", None, 200),
            ("local", False, 404),
        ]:
            s = settings.model_copy(update={"deployment_mode": mode, "api_docs": enabled})
            app = create_app("directory", title="t", description="d", settings=s)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
            ):
                for page in ("/docs", "/redoc"):
                    r = await c.get(page)
                    assert r.status_code == want, (mode, enabled, page, r.status_code)
                    if want == 404:
                        problem_of(r, 404)
                assert (await c.get("/openapi.json")).status_code == 200


# --- the live alert stream's caps -------------------------------------------------------------


class _Stream:
    """An open stream and its event reader, kept referenced: a reader that is garbage
    collected closes the connection, which would free the stream's place behind the test's
    back."""

    def __init__(self, ctx: Any, resp: httpx.Response) -> None:
        self.ctx, self.resp = ctx, resp
        self.events = sse_events(resp) if resp.status_code == 200 else None

    async def close(self) -> None:
        if self.events is not None:
            await self.events.aclose()
        await self.ctx.__aexit__(None, None, None)


async def _open_stream(
    c: httpx.AsyncClient, headers: dict[str, str]
) -> tuple[httpx.Response, _Stream]:
    """Open a stream and read its `ready` event (or the whole refusal)."""
    ctx = c.stream("GET", "/alerts/stream", headers=headers)
    resp = await ctx.__aenter__()
    stream = _Stream(ctx, resp)
    if stream.events is not None:
        ready = await asyncio.wait_for(anext(stream.events), 30)
        assert ready.event == "ready"
    else:
        await resp.aread()
    return resp, stream


@pytest.fixture
async def capped_api(settings: Settings) -> AsyncIterator[tuple[FastAPI, str]]:
    """The notifications app served by a real uvicorn on a free port, with caps of 2 streams
    a user and 3 in all."""
    import socket

    import uvicorn

    from services.notifications import api as notifications_api

    app = notifications_api.app
    capped = settings.model_copy(
        update={"alert_stream_max_per_user": 2, "alert_stream_max_total": 3}
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    entered = False
    if getattr(app.state, "sessions", None) is None:
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        entered = True
    saved = app.state.settings
    app.state.settings = capped
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        app.state.settings = saved
        if entered:
            await ctx.__aexit__(None, None, None)


class TestStreamCaps:
    async def test_per_user_and_total_caps_answer_429_and_a_closed_stream_frees_its_place(
        self, capped_api: tuple[FastAPI, str], settings: Settings
    ) -> None:
        app, base = capped_api
        casey = auth(
            settings, role="coordinator", org=settings.ics, sub="cap-casey-" + uuid.uuid4().hex[:6]
        )
        jordan = auth(
            settings, role="coordinator", org=settings.ics, sub="cap-jordan-" + uuid.uuid4().hex[:6]
        )
        open_: list[_Stream | None] = []
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            try:
                for _ in range(2):
                    resp, ctx = await _open_stream(c, casey)
                    assert resp.status_code == 200
                    open_.append(ctx)
                third, ctx = await _open_stream(c, casey)
                open_.append(ctx)
                body = problem_of(third, 429)
                assert "streams" in body["detail"]
                assert int(third.headers["retry-after"]) >= 1
                # another user still gets one, up to the total
                resp, ctx = await _open_stream(c, jordan)
                assert resp.status_code == 200
                open_.append(ctx)
                full, ctx = await _open_stream(c, jordan)
                open_.append(ctx)
                assert problem_of(full, 429) and "retry-after" in full.headers
                # Casey closes one stream (the browser tab goes away): the place is free
                await open_[0].close()
                open_[0] = None
                fanout = app.state.alert_fanout
                for _ in range(100):
                    if fanout.subscribers == 2:
                        break
                    await asyncio.sleep(0.05)
                assert fanout.subscribers == 2
                again, ctx = await _open_stream(c, casey)
                open_.append(ctx)
                assert again.status_code == 200
            finally:
                for stream in open_:
                    if stream is not None:
                        await stream.close()
        for _ in range(100):
            if app.state.alert_fanout.subscribers == 0:
                break
            await asyncio.sleep(0.05)
        assert app.state.alert_fanout.subscribers == 0
