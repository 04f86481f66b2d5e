"""One error hierarchy (shared/errors.py) rendered as RFC 9457 problem+json (shared/problems.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc

from shared.errors import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unauthenticated,
    ValidationFailed,
    WaymarkError,
)
from shared.problems import database_unavailable, install_error_handlers

SECRET = "9434765919-Alex-Synthetic"  # stands for patient data that must never be echoed

CASES: list[tuple[type[WaymarkError], int, str, str]] = [
    (WaymarkError, 400, "Bad request", "bad-request"),
    (ValidationFailed, 422, "Invalid request", "invalid-request"),
    (Unauthenticated, 401, "Not authenticated", "unauthenticated"),
    (Forbidden, 403, "Forbidden", "forbidden"),
    (NotFound, 404, "Not found", "not-found"),
    (Conflict, 409, "Conflict", "conflict"),
    (PreconditionFailed, 412, "Precondition failed", "precondition-failed"),
    (PreconditionRequired, 428, "Precondition required", "precondition-required"),
]
BY_NAME = {cls.__name__: cls for cls, *_ in CASES}


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=5)
    count: int


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> None:
        raise BY_NAME[name](f"{name} happened here")

    @app.get("/teapot")
    async def teapot() -> None:
        raise WaymarkError("short and stout", status=418)

    @app.get("/extra")
    async def extra() -> None:
        raise Conflict("version mismatch", current_version=3)

    @app.post("/items")
    async def items(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"database password is hunter2; patient {SECRET}")

    @app.get("/db-down")
    async def db_down() -> None:
        try:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        except asyncpg.PostgresError as exc:  # as SQLAlchemy's asyncpg adapter wraps it
            raise sa_exc.OperationalError("SELECT 1", {}, exc) from exc

    @app.get("/http")
    async def http() -> None:
        raise HTTPException(status_code=418, detail="I'm a teapot", headers={"Retry-After": "7"})

    @app.get("/only-get")
    async def only_get() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://errors") as c:
        yield c


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE)
    assert body["title"] and body["detail"]
    return body


class TestWaymarkErrors:
    @pytest.mark.parametrize("cls, status, title, slug", CASES, ids=[c[0].__name__ for c in CASES])
    async def test_each_error_renders_as_problem_json(
        self, client: httpx.AsyncClient, cls: type[WaymarkError], status: int, title: str, slug: str
    ) -> None:
        r = await client.get(f"/raise/{cls.__name__}")
        body = assert_problem(r, status)
        assert body == {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": f"{cls.__name__} happened here",
            "instance": f"/raise/{cls.__name__}",
        }

    async def test_only_unauthenticated_asks_for_a_bearer_token(
        self, client: httpx.AsyncClient
    ) -> None:
        for cls, status, *_ in CASES:
            r = await client.get(f"/raise/{cls.__name__}")
            if status == 401:
                assert r.headers["www-authenticate"] == "Bearer"
            else:
                assert "www-authenticate" not in r.headers, cls

    async def test_an_explicit_status_overrides_the_class_status(
        self, client: httpx.AsyncClient
    ) -> None:
        body = assert_problem(await client.get("/teapot"), 418)
        assert body["detail"] == "short and stout"
        assert body["type"] == PROBLEM_BASE + "bad-request"

    def test_an_explicit_status_does_not_change_the_class(self) -> None:
        WaymarkError("x", status=418)
        assert WaymarkError("y").status == 400
        assert NotFound("z").status == 404

    async def test_extra_members_are_added_to_the_problem(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/extra"), 409)
        assert body["current_version"] == 3
        assert body["detail"] == "version mismatch"

    def test_every_error_is_a_waymark_error_with_its_message(self) -> None:
        for cls, status, *_ in CASES:
            e = cls("m")
            assert isinstance(e, WaymarkError) and isinstance(e, Exception)
            assert e.message == "m" and str(e) == "m" and e.status == status


class TestRequestValidation:
    async def test_an_invalid_body_is_a_422_problem_with_an_errors_list(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post("/items", json={"name": SECRET, "count": "many"})
        body = assert_problem(r, 422)
        assert body["type"] == PROBLEM_BASE + "invalid-request"
        assert body["instance"] == "/items"
        locations = {tuple(e["location"]) for e in body["errors"]}
        assert ("body", "name") in locations and ("body", "count") in locations
        for e in body["errors"]:
            assert set(e) == {"location", "message", "type"}
            assert e["message"] and e["type"]
        assert "body.name" in body["detail"]

    async def test_the_offending_input_is_never_echoed(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/items", json={"name": SECRET, "count": SECRET, "unexpected": SECRET}
        )
        assert_problem(r, 422)
        assert SECRET not in r.text
        assert all("input" not in e and "ctx" not in e for e in r.json()["errors"])

    async def test_a_missing_body_is_a_422_problem(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.post("/items"), 422)
        assert body["errors"]

    async def test_malformed_json_is_a_422_problem(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/items",
            content=b'{"name": "' + SECRET.encode() + b'",',
            headers={"content-type": "application/json"},
        )
        body = assert_problem(r, 422)
        assert body["errors"][0]["type"] == "json_invalid"
        assert SECRET not in r.text

    async def test_the_detail_summarises_at_most_five_errors(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post(
            "/items", json={"name": "toolong", "count": "x", "a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
        )
        body = assert_problem(r, 422)
        assert len(body["errors"]) == 7
        assert body["detail"].count(";") == 4


class TestHttpExceptions:
    async def test_an_unknown_path_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/nowhere"), 404)
        assert body["type"] == PROBLEM_BASE + "http-404"
        assert body["instance"] == "/nowhere"

    async def test_an_http_exception_keeps_its_status_and_detail(
        self, client: httpx.AsyncClient
    ) -> None:
        body = assert_problem(await client.get("/http"), 418)
        assert body["detail"] == "I'm a teapot"

    async def test_an_http_exception_keeps_its_headers(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/http")
        assert r.headers.get("retry-after") == "7"

    async def test_method_not_allowed_is_a_405_problem_with_an_allow_header(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.delete("/only-get")
        assert_problem(r, 405)
        # RFC 9110 15.5.6: a 405 response MUST carry Allow
        assert "GET" in r.headers.get("allow", "")


class TestUnexpectedErrors:
    async def test_an_unexpected_exception_is_a_500_problem(
        self, client: httpx.AsyncClient
    ) -> None:
        body = assert_problem(await client.get("/boom"), 500)
        assert body["type"] == PROBLEM_BASE + "internal-error"
        assert body["instance"] == "/boom"

    async def test_a_500_reveals_nothing_internal(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/boom")
        assert r.status_code == 500
        for leak in ("hunter2", SECRET, "RuntimeError", "Traceback", "test_errors.py"):
            assert leak not in r.text

    async def test_the_unexpected_error_is_logged_with_its_trace(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level("ERROR", logger="shared.problems"):
            await client.get("/boom")
        records = [r for r in caplog.records if r.name == "shared.problems"]
        assert records and records[-1].exc_info is not None
        assert "/boom" in records[-1].getMessage()


def _caused_by(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:  # noqa: BLE001 - building a chain
        return exc


class TestDatabaseUnavailable:
    """A database that is restarting or unreachable is a 503 the client may retry, not a 500
    (the faults suite restarts PostgreSQL under load and expects exactly this)."""

    @pytest.mark.parametrize(
        "exc",
        [
            asyncpg.exceptions.CannotConnectNowError("starting up"),  # 57P03
            asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01
            asyncpg.exceptions.CrashShutdownError("crash"),  # 57P02
            asyncpg.exceptions.ConnectionDoesNotExistError("closed"),  # 08003
            ConnectionRefusedError(111, "Connection refused"),
            ConnectionResetError(104, "reset"),
            TimeoutError("connect timed out"),
            sa_exc.TimeoutError("QueuePool limit reached"),
            sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
            sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_unavailable_errors(self, exc: BaseException) -> None:
        assert database_unavailable(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            RuntimeError("a bug"),
            ValueError("bad value"),
            KeyError("x"),
            asyncpg.exceptions.UniqueViolationError("duplicate key"),  # 23505
            asyncpg.exceptions.UndefinedTableError("no such table"),  # 42P01
            asyncpg.exceptions.SerializationError("could not serialize"),  # 40001
            sa_exc.DBAPIError("SELECT 1", {}, Exception("syntax"), connection_invalidated=False),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_other_errors_are_not(self, exc: BaseException) -> None:
        assert not database_unavailable(exc)

    def test_found_through_the_cause_chain(self) -> None:
        wrapped = _caused_by(
            RuntimeError("while saving"), asyncpg.exceptions.AdminShutdownError("terminating")
        )
        assert database_unavailable(wrapped)
        assert not database_unavailable(_caused_by(RuntimeError("x"), ValueError("y")))

    def test_found_through_sqlalchemy_orig(self) -> None:
        exc = sa_exc.OperationalError(
            "SELECT 1", {}, asyncpg.exceptions.CannotConnectNowError("starting")
        )
        assert database_unavailable(exc)

    def test_a_cycle_in_the_chain_ends(self) -> None:
        a, b = RuntimeError("a"), RuntimeError("b")
        a.__context__, b.__context__ = b, a
        assert not database_unavailable(a)

    async def test_the_api_answers_503_with_retry_after(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/db-down")
        body = assert_problem(r, 503)
        assert body["type"] == PROBLEM_BASE + "service-unavailable"
        assert r.headers["retry-after"] == "2"
        assert "starting up" not in r.text and "SELECT" not in r.text
