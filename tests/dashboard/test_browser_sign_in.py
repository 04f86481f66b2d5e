"""Signing in and out in a real browser (headless Debian Chromium through Playwright), through
the instance's real local identity provider (npm oidc-provider) and the running notifications
API: a person's whole sign-in lands on their home page; signing out ends the session (the old
cookie, replayed, is sign-in again) and the provider's own session; a session that expired
sends the browser back to sign in, and the provider asks who is signing in again."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, BrowserContext, expect
from sqlalchemy import text

from services.notifications.dashboard.session import COOKIE, _id_hash
from tests.dashboard.browser_support import (
    Dashboard,
    choose_demo_user,
    new_context,
    on_dashboard_page,
)


async def _session_cookie(ctx: BrowserContext) -> dict[str, Any]:
    found = [c for c in await ctx.cookies() if c["name"] == COOKIE]
    assert len(found) == 1, found
    return dict(found[0])


class TestSignInThroughTheProvider:
    async def test_sign_in_lands_on_the_worklist_and_sign_out_ends_both_sessions(
        self, browser: Browser, dashboard: Dashboard
    ) -> None:
        ctx = await new_context(browser)
        replay = await new_context(browser)
        try:
            page = await ctx.new_page()
            # a page asked for without a session: off to the provider's sign-in page
            await page.goto(dashboard.url("/alerts"))
            assert page.url.startswith(dashboard.settings.issuer), page.url
            assert await choose_demo_user(page, "coordinator") == "demo-casey"
            await page.wait_for_url(dashboard.url("/alerts"))
            await expect(page.locator("h1")).to_have_text("Alerts")
            await expect(page.locator(".header__account")).to_contain_text("Casey Coordinator")
            cookie = await _session_cookie(ctx)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            # the provider's session is alive: a second sign-in needs no choosing
            await page.goto(dashboard.url("/login"))
            await page.wait_for_url(on_dashboard_page(dashboard))
            assert (await _session_cookie(ctx))["value"] != cookie["value"]
            cookie = await _session_cookie(ctx)

            # sign out: the provider asks to confirm its own sign-out, then sends us back
            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url(lambda url: url.startswith(dashboard.settings.issuer))
            await page.get_by_role("button", name="Yes, sign me out").click()
            await page.wait_for_url(dashboard.url("/signed-out"))
            await expect(page.locator("h1")).to_have_text("You have signed out")
            assert not [c for c in await ctx.cookies() if c["name"] == COOKIE]

            # the old cookie, replayed in another browser, is no session: sign in again
            await replay.add_cookies([cookie])  # type: ignore[list-item]
            other = await replay.new_page()
            await other.goto(dashboard.url("/alerts"))
            assert other.url.startswith(dashboard.settings.issuer), other.url
            await expect(
                other.get_by_role("button", name="Sign in as Casey Coordinator")
            ).to_be_visible()

            # and the provider's session ended too: signing in asks who again
            await page.get_by_role("link", name="Sign in again").click()
            await page.wait_for_url(lambda url: url.startswith(dashboard.settings.issuer))
            await expect(
                page.get_by_role("button", name="Sign in as Casey Coordinator")
            ).to_be_visible()
        finally:
            await ctx.close()
            await replay.close()

    async def test_an_expired_session_returns_to_sign_in(
        self, browser: Browser, dashboard: Dashboard, sessions: Any
    ) -> None:
        ctx = await new_context(browser)
        try:
            page = await ctx.new_page()
            await page.goto(dashboard.url("/login"))
            await choose_demo_user(page, "ics_lead")
            await page.wait_for_url(dashboard.url("/overview"))
            cookie = await _session_cookie(ctx)
            async with sessions() as db, db.begin():
                await db.exec(
                    text(  # type: ignore[call-overload]
                        "UPDATE dashboard_session SET expires_at = now() - interval '1 second' "
                        "WHERE id_hash = :h"
                    ).bindparams(h=_id_hash(cookie["value"]))
                )
            # the provider's session is still alive, yet it asks who is signing in (prompt=login)
            await page.reload()
            assert page.url.startswith(dashboard.settings.issuer), page.url
            await expect(page.get_by_role("button", name="Sign in as Lee Lead")).to_be_visible()
            # signing in again returns to the page that was open
            await choose_demo_user(page, "ics_lead")
            await page.wait_for_url(dashboard.url("/overview"))
            await expect(page.locator("h1")).to_have_count(1)
        finally:
            await ctx.close()
