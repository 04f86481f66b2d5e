"""Issue #14 finding 5: the dashboard's sessions are server-side and revocable.

In-process against the notifications app and the real database (the referrals app
in-process too, for the bearer check; a real uvicorn server for the live stream):
- the cookie holds a random id, not a token; the table holds a hash of it and the token
  sealed, so neither the cookie nor a copy of the table is a bearer token for any API;
- signing out deletes the session: the old cookie, replayed, is back to sign-in (and the
  live stream refuses it, and an open stream ends);
- idle and absolute timeouts end a session;
- the pages still call the other services' APIs as the user, and CSRF still holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from services.notifications.api import app
from services.notifications.dashboard import session as dashboard_session
from services.notifications.dashboard.session import COOKIE
from shared.settings import Settings
from tests.dashboard.page_support import csrf_of, landing, sign_in
from tests.notifications.alert_support import sse_events


async def _signed_in(web: httpx.AsyncClient, user: str = "demo-casey") -> str:
    landing(await sign_in(web, user))
    cookie = web.cookies.get(COOKIE)
    assert cookie
    return cookie


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(b"waymark-dashboard-session\x00" + session_id.encode()).hexdigest()


async def _row(sessions: Any, session_id: str) -> Any:
    async with sessions() as db:
        return (
            await db.exec(
                text(  # type: ignore[call-overload]
                    "SELECT * FROM dashboard_session WHERE id_hash = :h"
                ).bindparams(h=_id_hash(session_id))
            )
        ).first()


async def _age(sessions: Any, session_id: str, **columns: timedelta) -> None:
    """Move a session's times into the past, as if that much time had gone by."""
    sets = ", ".join(f"{name} = {name} - CAST(:{name} AS INTERVAL)" for name in columns)
    async with sessions() as db, db.begin():
        await db.exec(
            text(  # type: ignore[call-overload]
                f"UPDATE dashboard_session SET {sets} WHERE id_hash = :h"
            ).bindparams(h=_id_hash(session_id), **columns)
        )


def _replay(client: httpx.AsyncClient, cookie: str) -> None:
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie, domain="dashboard.test")


class TestTheCookieIsNoToken:
    async def test_the_cookie_is_a_random_id_and_the_table_holds_no_usable_secret(
        self, web: httpx.AsyncClient, sessions: Any
    ) -> None:
        cookie = await _signed_in(web)
        assert "." not in cookie and len(cookie) >= 40  # not a JWT; 256 random bits
        row = await _row(sessions, cookie)
        assert row is not None
        assert row.id_hash != cookie and cookie not in row.id_hash
        assert b"eyJ" not in bytes(row.token_sealed)  # the token is sealed, not stored
        assert row.user_identity.startswith("demo-casey")
        # a second sign-in is a second session with an id of its own
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
        ) as other:
            assert await _signed_in(other) != cookie

    async def test_the_cookie_as_a_bearer_token_is_refused_by_the_apis(
        self, web: httpx.AsyncClient, referrals_client: httpx.AsyncClient, dashboard_app: Any
    ) -> None:
        cookie = await _signed_in(web)
        notifications_client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=dashboard_app), base_url="http://notifications"
        )
        bearer = {"Authorization": f"Bearer {cookie}", "Accept": "application/json"}
        for client, path in (
            (referrals_client, "/referrals"),
            (referrals_client, "/worklist"),
            (notifications_client, "/alerts"),
            (notifications_client, "/alerts/stream"),
        ):
            r = await client.get(path, headers=bearer)
            assert r.status_code == 401, (path, r.status_code, r.text[:200])
            assert r.headers["www-authenticate"] == "Bearer"
        # nor as a bearer token on the dashboard's own pages (a sign-in proxy's header)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
        ) as fresh:
            r = await fresh.get("/dashboard/alerts", headers=bearer)
            assert r.status_code == 401
        await notifications_client.aclose()

    async def test_the_pages_still_call_the_other_apis_as_the_user(
        self, web: httpx.AsyncClient, running_apps: Settings
    ) -> None:
        # the directory page reads the directory API with the token the session holds
        await _signed_in(web, "demo-gita")
        page = await web.get("/dashboard/directory", params={"q": "pain"})
        assert page.status_code == 200, page.text[:500]
        assert "could not be reached" not in page.text and "not valid" not in page.text


class TestSigningOut:
    async def test_the_old_cookie_replayed_after_sign_out_is_back_to_sign_in(
        self, web: httpx.AsyncClient, sessions: Any
    ) -> None:
        cookie = await _signed_in(web)
        page = await web.get("/dashboard/alerts")
        assert page.status_code == 200
        out = await web.post("/dashboard/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303
        assert await _row(sessions, cookie) is None  # revoked server-side
        _replay(web, cookie)  # an attacker's copy of the cookie
        for path in ("/dashboard/alerts", "/dashboard", "/dashboard/overview"):
            r = await web.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login"), (
                path
            )
        r = await web.get("/dashboard/alerts", headers={"Accept": "application/json"})
        assert r.status_code == 401 and "session has ended" in r.json()["detail"]
        stream = await web.get("/alerts/stream")
        assert stream.status_code == 401 and "session has ended" in stream.json()["detail"]
        # and it cannot post a form either
        refused = await web.post("/dashboard/logout", data={"csrf": csrf_of(page)})
        assert refused.status_code == 303

    async def test_signing_out_ends_only_that_session(self, web: httpx.AsyncClient) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
        ) as laptop:
            await _signed_in(web)
            await _signed_in(laptop)
            page = await web.get("/dashboard/alerts")
            await web.post("/dashboard/logout", data={"csrf": csrf_of(page)})
            assert (await laptop.get("/dashboard/alerts")).status_code == 200

    async def test_csrf_is_bound_to_the_session(self, web: httpx.AsyncClient) -> None:
        await _signed_in(web)
        first = csrf_of(await web.get("/dashboard/alerts"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
        ) as other:
            await _signed_in(other)  # the same user, another session: another token
            theirs = csrf_of(await other.get("/dashboard/alerts"))
        assert first != theirs
        refused = await web.post("/dashboard/logout", data={"csrf": theirs})
        assert refused.status_code == 403


class TestTimeouts:
    async def test_an_idle_session_ends_and_activity_keeps_it_alive(
        self, web: httpx.AsyncClient, sessions: Any, settings: Settings
    ) -> None:
        cookie = await _signed_in(web)
        idle = timedelta(seconds=settings.dashboard_session_idle_seconds)
        # nearly idle for the whole timeout: a request now keeps the session going
        await _age(sessions, cookie, last_seen_at=idle - timedelta(seconds=30))
        assert (await web.get("/dashboard/alerts")).status_code == 200
        row = await _row(sessions, cookie)
        assert datetime.now(UTC) - row.last_seen_at < timedelta(seconds=10)
        # idle for longer than the timeout: over
        await _age(sessions, cookie, last_seen_at=idle + timedelta(seconds=1))
        r = await web.get("/dashboard/alerts")
        assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
        assert (await web.get("/alerts/stream")).status_code == 401

    async def test_a_session_ends_at_its_absolute_timeout_however_busy(
        self, web: httpx.AsyncClient, sessions: Any, settings: Settings
    ) -> None:
        cookie = await _signed_in(web)
        row = await _row(sessions, cookie)
        lifetime = row.expires_at - row.created_at
        assert lifetime == timedelta(seconds=settings.dashboard_session_max_seconds)
        await _age(sessions, cookie, expires_at=lifetime + timedelta(seconds=1))
        r = await web.get("/dashboard/alerts")
        assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")

    async def test_a_new_sign_in_clears_away_ended_sessions(
        self, web: httpx.AsyncClient, sessions: Any, settings: Settings
    ) -> None:
        old = await _signed_in(web)
        await _age(
            sessions,
            old,
            last_seen_at=timedelta(seconds=settings.dashboard_session_idle_seconds + 5),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
        ) as other:
            await _signed_in(other)
        assert await _row(sessions, old) is None


# --- the live stream on the cookie (a real server: streams are not buffered) -----------------


@pytest.fixture
async def served(dashboard_app: Any) -> AsyncIterator[str]:
    """The in-process app behind a real uvicorn on a free port, configured for heartbeats
    every 0.2 s while it serves (its own settings again afterwards)."""
    configured = dashboard_app.state.settings
    dashboard_app.state.settings = configured.model_copy(
        update={"alert_stream_heartbeat_seconds": 0.2}
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        dashboard_app.state.settings = configured


class TestTheStream:
    async def test_an_open_stream_ends_when_its_session_is_signed_out(self, served: str) -> None:
        async with httpx.AsyncClient(base_url=served, timeout=30) as browser:
            landing(await sign_in(browser))
            page = await browser.get("/dashboard/alerts")
            async with browser.stream("GET", "/alerts/stream") as resp:
                assert resp.status_code == 200
                events = sse_events(resp)
                assert (await asyncio.wait_for(anext(events), 30)).event == "ready"
                beats = await asyncio.wait_for(anext(events), 30)
                assert beats.comments == ["heartbeat"]  # the session is alive: it goes on
                async with httpx.AsyncClient(base_url=served, timeout=30) as tab:
                    tab.cookies.set(COOKIE, browser.cookies[COOKIE])
                    out = await tab.post("/dashboard/logout", data={"csrf": csrf_of(page)})
                    assert out.status_code == 303

                async def drain() -> int:
                    n = 0
                    async for _ in events:
                        n += 1
                    return n

                # the next heartbeat finds the session gone and the stream ends
                assert await asyncio.wait_for(drain(), 10) <= 1
            await events.aclose()


def test_the_session_module_names_its_settings() -> None:
    # the timeouts are settings with documented defaults (shared/settings.py)
    s = Settings()
    assert s.dashboard_session_idle_seconds == 30 * 60
    assert s.dashboard_session_max_seconds == 8 * 3600
    assert dashboard_session.SESSION_ID_BYTES >= 32
