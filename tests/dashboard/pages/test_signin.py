"""The dashboard as an OpenID Connect relying party (pages/signin.py, relying_party.py), against
the instance's real local identity provider (npm oidc-provider) and the real database:

- the sign-in starts the authorization code flow (PKCE S256, state, nonce, the API resource)
  with a sealed, Lax, short-lived state cookie; the callback starts a server-side session
  (HttpOnly, Strict) and moves on to where each role lands, or the page asked for;
- the callback's failures (the provider's error, a missing or altered state, a refused or
  replayed code) are clear 400 pages, never a 500 and never a session;
- ID tokens are checked case by case (signature, iss, aud, exp, nonce, azp);
- refresh: a due access token is refreshed on the next request; a refused refresh ends the
  session;
- sign-out: CSRF, the session row gone, the refresh token revoked at the provider, and the
  browser sent to the provider's end_session_endpoint (RP-initiated logout).

In-process (the notifications app); each test signs in with a browser-like client of its own.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from sqlalchemy import text

from services.notifications.api import app
from services.notifications.dashboard import relying_party
from services.notifications.dashboard import session as dashboard_session
from services.notifications.dashboard.relying_party import LoginState, SignInFailed, Tokens
from shared import oidc
from shared.auth import _local_signing_key
from shared.settings import Settings
from tests.dashboard.page_support import csrf_of, landing, sign_in, through_provider
from tests.notifications.alert_support import coordinator as coordinator_auth

COOKIE = dashboard_session.COOKIE


def _set_cookie(resp: httpx.Response, name: str) -> set[str]:
    header = next(h for h in resp.headers.get_list("set-cookie") if h.startswith(f"{name}="))
    return {f.strip().lower() for f in header.split(";")}


async def _tokens(sessions: Any, session_id: str) -> Tokens:
    async with sessions() as db:
        row = (
            await db.exec(
                text(  # type: ignore[call-overload]
                    "SELECT token_sealed FROM dashboard_session WHERE id_hash = :h"
                ).bindparams(h=dashboard_session._id_hash(session_id))
            )
        ).first()
    assert row is not None, "no session row"
    found = dashboard_session._tokens(session_id, bytes(row.token_sealed))
    assert found is not None
    return found


async def _store(sessions: Any, session_id: str, tokens: Tokens) -> None:
    async with sessions() as db, db.begin():
        await db.exec(
            text(  # type: ignore[call-overload]
                "UPDATE dashboard_session SET token_sealed = :t WHERE id_hash = :h"
            ).bindparams(
                t=dashboard_session._seal(session_id, tokens.to_json()),
                h=dashboard_session._id_hash(session_id),
            )
        )


async def _provider_refresh(s: Settings, refresh_token: str) -> httpx.Response:
    """The provider asked directly to refresh (as the dashboard's client would)."""
    meta = await oidc.metadata(s)
    c = relying_party.client(s)
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            meta["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(c.client_id, c.secret),
        )


class TestStartingTheSignIn:
    async def test_it_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(
        self, web: httpx.AsyncClient, settings: Settings
    ) -> None:
        resp = await web.get("/dashboard/login")
        assert resp.status_code == 303
        where = urlsplit(resp.headers["location"])
        assert f"{where.scheme}://{where.netloc}" == settings.issuer
        q = {k: v[0] for k, v in parse_qs(where.query).items()}
        assert q["client_id"] == "waymark-dashboard" and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32 and q["state"] != q["nonce"]
        assert q["resource"] == "urn:waymark:api"
        assert q["scope"].split() == ["openid", "profile", "offline_access", "waymark"]
        assert q["redirect_uri"] == (
            f"http://127.0.0.1:{settings.api_port('notifications')}/dashboard/auth/callback"
        )
        assert "prompt" not in q
        flags = _set_cookie(resp, "waymark_login")
        assert {"httponly", "samesite=lax", "path=/dashboard/auth", "max-age=600"} <= flags
        # the cookie is sealed: neither the verifier nor the state can be read from it
        sealed = web.cookies["waymark_login"]
        assert q["state"] not in sealed and "verifier" not in sealed

    async def test_a_session_that_ended_asks_the_provider_to_sign_the_person_in_again(
        self, web: httpx.AsyncClient
    ) -> None:
        web.cookies.set(COOKIE, "an-ended-session", domain="dashboard.test")
        resp = await web.get("/dashboard/alerts?sort=age")
        assert resp.status_code == 303
        assert resp.headers["location"] == (
            "/dashboard/login?next=%2Fdashboard%2Falerts%3Fsort%3Dage&again=1"
        )
        start = await web.get(resp.headers["location"])
        assert parse_qs(urlsplit(start.headers["location"]).query)["prompt"] == ["login"]

    async def test_a_page_without_a_session_sends_the_browser_to_sign_in(self, web) -> None:
        for path in (
            "/dashboard/overview",
            "/dashboard/worklist",
            "/dashboard/directory",
            "/dashboard/alerts/x",
            f"/dashboard/referrals/{uuid.uuid4()}",
            "/dashboard",
        ):
            resp = await web.get(path)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/dashboard/login"), path
            assert "again=1" not in resp.headers["location"]

    async def test_the_script_gets_a_401_problem_rather_than_a_redirect(self, web) -> None:
        resp = await web.get("/dashboard/alerts", headers={"Accept": "application/json"})
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")


class TestSigningIn:
    async def test_it_sets_an_httponly_strict_session_cookie_and_lands_on_the_inbox(
        self, web: httpx.AsyncClient
    ) -> None:
        resp = await sign_in(web)
        assert landing(resp) == "/dashboard/alerts"
        flags = _set_cookie(resp, COOKIE)
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # local mode, plain http
        assert "waymark_login" not in web.cookies  # the sign-in's state is used up
        page = await web.get("/dashboard/alerts")
        assert page.status_code == 200 and "<h1>Alerts</h1>" in page.text
        assert "Signed in as <strong>Casey Coordinator</strong>" in page.text

    @pytest.mark.parametrize(
        "user,home",
        [
            ("demo-lee", "/dashboard/overview"),
            ("demo-sam", "/dashboard/worklist"),
            ("demo-gita", "/dashboard/directory"),
        ],
    )
    async def test_each_role_starts_at_its_own_page(self, web, user, home) -> None:
        assert landing(await sign_in(web, user)) == home
        again = await web.get("/dashboard")
        assert again.status_code == 303 and again.headers["location"] == home

    async def test_it_returns_to_the_page_asked_for_but_never_off_the_dashboard(self, web) -> None:
        ok = await sign_in(web, next_url="/dashboard/directory?q=yoga")
        assert landing(ok) == "/dashboard/directory?q=yoga"
        bad = await sign_in(web, next_url="//evil.example/x")
        assert landing(bad) == "/dashboard/alerts"

    @pytest.mark.parametrize(
        "bad",
        [
            "//evil.example/x",
            "https://evil.example/dashboard",
            "/dashboardx",
            "/alerts",
            "/dashboard\\@evil",
            "javascript:alert(1)",
            "/dashboard/ok\r\nSet-Cookie: x=1",
        ],
    )
    def test_only_dashboard_pages_are_places_to_return_to(self, bad: str) -> None:
        assert dashboard_session.safe_next(bad) is None
        assert dashboard_session.safe_next("/dashboard/alerts?sort=age") == (
            "/dashboard/alerts?sort=age"
        )

    async def test_a_forged_cookie_is_no_session(self, web) -> None:
        for value in ("not-a-session", "x" * 200, "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"):
            web.cookies.set(COOKIE, value, domain="dashboard.test")
            resp = await web.get("/dashboard/alerts")
            assert resp.status_code == 303 and "/dashboard/login" in resp.headers["location"]


class TestTheCallbackRefuses:
    async def test_the_providers_error_is_a_clear_page(self, web) -> None:
        resp = await web.get(
            "/dashboard/auth/callback",
            params={"error": "access_denied", "error_description": "the user said no"},
        )
        assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")
        assert "Sign-in did not complete" in resp.text and "the user said no" in resp.text
        assert 'href="/dashboard/login"' in resp.text and COOKIE not in web.cookies

    async def test_a_callback_without_its_state_cookie_or_with_another_state(self, web) -> None:
        start = await web.get("/dashboard/login")
        back = urlsplit(await through_provider(start.headers["location"], "demo-casey"))
        q = {k: v[0] for k, v in parse_qs(back.query).items()}
        wrong = await web.get(back.path, params={**q, "state": "another-state"})
        assert wrong.status_code == 400 and "had expired" in wrong.text
        web.cookies.clear()
        lost = await web.get(f"{back.path}?{back.query}")  # the cookie is gone
        assert lost.status_code == 400 and COOKIE not in web.cookies

    async def test_an_altered_or_old_state_cookie_opens_to_nothing(self, settings) -> None:
        c = relying_party.client(settings)
        login = LoginState("s", "n", "v", "", time.time())
        sealed = relying_party.seal_state(c, login)
        assert relying_party.open_state(c, sealed, time.time()) == login
        flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
        assert relying_party.open_state(c, flipped, time.time()) is None
        assert relying_party.open_state(c, "garbage", time.time()) is None
        later = time.time() + relying_party.LOGIN_STATE_SECONDS + 1
        assert relying_party.open_state(c, sealed, later) is None
        other = relying_party.Client(c.client_id, "another-secret", c.base)
        assert relying_party.open_state(other, sealed, time.time()) is None

    async def test_a_code_the_provider_refuses_or_a_replayed_callback(self, web) -> None:
        start = await web.get("/dashboard/login")
        back = urlsplit(await through_provider(start.headers["location"], "demo-casey"))
        q = {k: v[0] for k, v in parse_qs(back.query).items()}
        login_cookie = web.cookies["waymark_login"]
        forged = await web.get(back.path, params={**q, "code": "not-a-code"})
        assert forged.status_code == 400 and "refused" in forged.text
        assert COOKIE not in web.cookies
        # the real code, once: signed in; the same callback again: refused, no second session
        web.cookies.set("waymark_login", login_cookie, domain="dashboard.test")
        ok = await web.get(f"{back.path}?{back.query}")
        assert landing(ok) == "/dashboard/alerts"
        first = web.cookies[COOKIE]
        web.cookies.set("waymark_login", login_cookie, domain="dashboard.test")
        replay = await web.get(f"{back.path}?{back.query}")
        assert replay.status_code == 400 and "refused" in replay.text
        assert web.cookies[COOKIE] == first  # no second session


def _id_token(s: Settings, **changes: Any) -> str:
    kid, key = _local_signing_key(s)
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": s.issuer,
        "aud": "waymark-dashboard",
        "sub": "demo-casey",
        "nonce": "the-nonce",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def _none_alg(s: Settings) -> str:
    good = _id_token(s)
    head = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).decode().rstrip("=")
    return f"{head}.{good.split('.')[1]}."


class TestTheIdToken:
    async def test_a_good_one_is_accepted(self, settings: Settings) -> None:
        claims = await relying_party.validate_id_token(
            settings, _id_token(settings), nonce="the-nonce"
        )
        assert claims["sub"] == "demo-casey"

    @pytest.mark.parametrize(
        "changes,why",
        [
            ({"nonce": "another"}, "nonce"),
            ({"nonce": None}, "nonce"),
            ({"aud": "waymark-cli"}, "audience"),
            ({"aud": ["waymark-dashboard", "waymark-cli"]}, "azp"),
            ({"azp": "waymark-cli"}, "azp"),
            ({"iss": "http://127.0.0.1:1"}, "issuer"),
            ({"exp": datetime.now(UTC) - timedelta(hours=1)}, "expired"),
            ({"iat": None}, "iat"),
            ({"sub": "demo-jordan"}, "another person"),
        ],
    )
    async def test_each_bad_one_is_refused(
        self, settings: Settings, changes: dict[str, Any], why: str
    ) -> None:
        subject = "demo-casey" if why == "another person" else None
        with pytest.raises(SignInFailed, match=f"(?i){why}"):
            await relying_party.validate_id_token(
                settings, _id_token(settings, **changes), nonce="the-nonce", subject=subject
            )

    async def test_unsigned_or_garbage_is_refused(self, settings: Settings) -> None:
        for token in (_none_alg(settings), "not.a.jwt", _id_token(settings)[:-6] + "AAAAAA"):
            with pytest.raises(SignInFailed):
                await relying_party.validate_id_token(settings, token, nonce="the-nonce")


class TestRefresh:
    async def test_a_due_access_token_is_refreshed_on_the_next_request(
        self, web: httpx.AsyncClient, sessions: Any
    ) -> None:
        landing(await sign_in(web))
        sid = web.cookies[COOKIE]
        before = await _tokens(sessions, sid)
        assert before.expires_at - time.time() > 600  # the provider's 15 minutes
        await _store(sessions, sid, Tokens(**{**before.__dict__, "expires_at": time.time() + 30}))
        page = await web.get("/dashboard/alerts")
        assert page.status_code == 200 and "Casey Coordinator" in page.text
        after = await _tokens(sessions, sid)
        assert after.access_token != before.access_token
        assert after.expires_at - time.time() > 600
        # not due again: the next request uses it as it is
        assert (await web.get("/dashboard/alerts")).status_code == 200
        assert (await _tokens(sessions, sid)).access_token == after.access_token

    async def test_a_refused_refresh_ends_the_session(
        self, web: httpx.AsyncClient, sessions: Any, settings: Settings
    ) -> None:
        landing(await sign_in(web))
        sid = web.cookies[COOKIE]
        before = await _tokens(sessions, sid)
        revoked = await relying_party.revoke(settings, before.refresh_token)
        assert revoked
        await _store(sessions, sid, Tokens(**{**before.__dict__, "expires_at": time.time() + 30}))
        resp = await web.get("/dashboard/alerts")
        assert resp.status_code == 303 and "again=1" in resp.headers["location"]
        async with sessions() as db:
            left = await db.exec(
                text(  # type: ignore[call-overload]
                    "SELECT count(*) FROM dashboard_session WHERE id_hash = :h"
                ).bindparams(h=dashboard_session._id_hash(sid))
            )
            assert left.scalar_one() == 0


class TestSigningOut:
    async def test_it_needs_the_csrf_token(self, web) -> None:
        landing(await sign_in(web))
        refused = await web.post("/dashboard/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403 and "has expired" in refused.text
        assert (await web.get("/dashboard/alerts")).status_code == 200

    async def test_it_ends_the_session_revokes_and_hands_over_to_the_provider(
        self, web: httpx.AsyncClient, sessions: Any, settings: Settings
    ) -> None:
        landing(await sign_in(web))
        sid = web.cookies[COOKIE]
        held = await _tokens(sessions, sid)
        assert (await _provider_refresh(settings, held.refresh_token)).status_code == 200
        held = await _tokens(sessions, sid)
        page = await web.get("/dashboard/alerts")
        out = await web.post("/dashboard/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and COOKIE not in web.cookies
        meta = await oidc.metadata(settings)
        where = urlsplit(out.headers["location"])
        assert f"{where.scheme}://{where.netloc}{where.path}" == meta["end_session_endpoint"]
        q = {k: v[0] for k, v in parse_qs(where.query).items()}
        assert q["id_token_hint"] == held.id_token
        assert q["post_logout_redirect_uri"].endswith("/dashboard/signed-out")
        # the refresh token the session held is dead at the provider
        dead = await _provider_refresh(settings, held.refresh_token)
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
        # and the session is gone
        web.cookies.set(COOKIE, sid, domain="dashboard.test")
        assert (await web.get("/dashboard/alerts")).status_code == 303

    async def test_the_signed_out_page_offers_to_sign_in_again(self, web) -> None:
        page = await web.get("/dashboard/signed-out")
        assert page.status_code == 200 and "<h1>You have signed out</h1>" in page.text
        assert 'href="/dashboard/login"' in page.text


class TestProductionMode:
    @pytest.fixture
    def production(self, settings: Settings) -> Any:
        before = app.state.settings
        app.state.settings = settings.model_copy(
            update={"deployment_mode": "production", "dashboard_public_url": "https://wm.test"}
        )
        yield
        app.state.settings = before

    async def test_sign_in_is_the_same_flow_with_a_secure_state_cookie(self, web, production):
        resp = await web.get("/dashboard/login")
        assert resp.status_code == 303
        q = parse_qs(urlsplit(resp.headers["location"]).query)
        assert q["redirect_uri"] == ["https://wm.test/dashboard/auth/callback"]
        assert "secure" in _set_cookie(resp, "waymark_login")

    async def test_a_bearer_token_still_opens_the_pages(self, web, production, settings):
        resp = await web.get("/dashboard/alerts", headers=coordinator_auth(settings))
        assert resp.status_code == 200
