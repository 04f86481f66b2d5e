"""The partner clients page (pages/clients.py): an administrator registers a partner's client
through the form and sees its secret once, rotates it and revokes it, against the real local
OpenID provider; CSRF on every form; other roles are refused; bad forms are explained on the
page.

In-process against the notifications app and the real database. The administrator's pages are
reached as behind a sign-in proxy (a bearer token of an admin of an organisation of its own):
the local sign-in page's demo users hold no administrator until sign-in goes through the local
provider."""

from __future__ import annotations

import re
import uuid

import pytest

from shared import oidc
from shared.errors import Unauthenticated
from shared.settings import Settings
from tests.conftest import auth
from tests.dashboard.page_support import csrf_of, sign_in

SECRET = re.compile(r'<code id="client-secret">([^<]+)</code>')
CLIENT_ID = re.compile(r"<dt>Client id</dt><dd><code>([^<]+)</code>")


def _row_key(text: str, client_id: str) -> str:
    row = re.search(
        rf"<tr>\s*<td>[^<]*</td>\s*<td><code>{re.escape(client_id)}</code>.*?</tr>", text, re.S
    )
    assert row, f"no row for {client_id}"
    key = re.search(r"/dashboard/partner-clients/(pcl_[0-9a-f]+)/revoke", row.group(0))
    assert key
    return key.group(1)


def as_admin(web, s: Settings) -> None:  # type: ignore[no-untyped-def]
    web.headers.update(auth(s, role="admin", org=f"ORG-{uuid.uuid4().hex[:8].upper()}"))


class TestPartnerClientsPage:
    async def test_register_see_the_secret_once_rotate_and_revoke(self, web, settings: Settings):
        as_admin(web, settings)
        page = await web.get("/dashboard/partner-clients")
        assert page.status_code == 200, page.text
        assert "<h1>Partner clients</h1>" in page.text
        assert 'name="scope:referral.read"' in page.text and "message_context.read" not in page.text
        assert 'href="/dashboard/partner-clients"' in page.text  # in the navigation
        name = f"Booking {uuid.uuid4().hex[:6]}"
        made = await web.post(
            "/dashboard/partner-clients",
            data={"csrf": csrf_of(page), "name": name, "scope:referral.read": "on"},
        )
        assert made.status_code == 201, made.text
        assert made.headers["cache-control"] == "no-store"
        secret, cid = SECRET.search(made.text), CLIENT_ID.search(made.text)
        assert secret and cid and "shown only this once" in made.text
        secret_value, client_id = secret.group(1), cid.group(1)
        await oidc.client_credentials(settings, client_id, secret_value, "referral.read")

        again = await web.get("/dashboard/partner-clients")
        assert client_id in again.text and secret_value not in again.text
        key = _row_key(again.text, client_id)

        rotated = await web.post(
            f"/dashboard/partner-clients/{key}/rotate", data={"csrf": csrf_of(again)}
        )
        assert rotated.status_code == 200, rotated.text
        new_secret = SECRET.search(rotated.text)
        assert new_secret and new_secret.group(1) != secret_value
        with pytest.raises(Unauthenticated):
            await oidc.client_credentials(settings, client_id, secret_value, "referral.read")
        await oidc.client_credentials(settings, client_id, new_secret.group(1), "referral.read")

        revoked = await web.post(
            f"/dashboard/partner-clients/{key}/revoke", data={"csrf": csrf_of(rotated)}
        )
        assert revoked.status_code == 303
        with pytest.raises(Unauthenticated, match="invalid_client"):
            await oidc.client_credentials(settings, client_id, new_secret.group(1), "referral.read")
        after = await web.get("/dashboard/partner-clients")
        assert re.search(rf"{re.escape(client_id)}</code>.*?<td>revoked", after.text, re.S)

    async def test_forms_need_the_csrf_token_and_bad_ones_are_explained(
        self, web, settings: Settings
    ):
        as_admin(web, settings)
        page = await web.get("/dashboard/partner-clients")
        r = await web.post(
            "/dashboard/partner-clients", data={"name": "x", "scope:referral.read": "on"}
        )
        assert r.status_code == 403, r.text
        r = await web.post(
            "/dashboard/partner-clients", data={"csrf": csrf_of(page), "name": "No scopes"}
        )
        assert r.status_code == 422 and "There is a problem" in r.text
        assert 'value="No scopes"' in r.text  # the form keeps what was typed
        r = await web.post(
            "/dashboard/partner-clients",
            data={"csrf": csrf_of(page), "name": "Greedy", "scope:care_plan.read": "on"},
        )
        assert r.status_code == 422 and "cannot hold care_plan.read" in r.text

    @pytest.mark.parametrize("user", ["demo-casey", "demo-gita"])
    async def test_only_administrators_see_the_page(self, web, user: str):
        await sign_in(web, user)
        r = await web.get("/dashboard/partner-clients")
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
        home = await web.get("/dashboard/directory")
        assert 'href="/dashboard/partner-clients"' not in home.text
