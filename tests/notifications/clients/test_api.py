"""Partner onboarding against the real local OpenID provider (devtools/idp: oidc-provider's
dynamic client registration and its management) and the real database: an administrator
registers a partner's client; the client gets a token by client credentials and calls what
its scopes allow, and is refused what they do not; a rotated secret replaces the old one at
once; a revoked client gets no more tokens; another organisation's administrator sees none of
it; every change is audited; neither the secret nor the registration access token is kept in
the clear."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.notifications.clients import handlers, provider, sealing
from services.notifications.clients.schemas import ClientCreate
from shared import oidc
from shared.access import Principal, Role
from shared.db import unit_of_work
from shared.errors import Unauthenticated
from shared.oidc import IssuerUnavailable
from shared.settings import Settings
from tests.conftest import auth

pytestmark = pytest.mark.stack


def _org() -> str:
    return f"ORG-{uuid.uuid4().hex[:8].upper()}"


def admin(s: Settings, org: str) -> dict[str, str]:
    return auth(s, role="admin", org=org, ics=s.ics)


async def register(
    client: httpx.AsyncClient, s: Settings, org: str, scopes: list[str], **kw: Any
) -> dict[str, Any]:
    r = await client.post(
        "/partner-clients",
        headers=admin(s, org),
        json={"name": f"Acme booking {uuid.uuid4().hex[:6]}", "scopes": scopes, **kw},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def token_for(s: Settings, client_id: str, secret: str, scopes: list[str]) -> str:
    token, ttl = await oidc.client_credentials(s, client_id, secret, " ".join(scopes))
    assert 0 < ttl <= 300
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def q(sessions, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())  # type: ignore[call-overload]


class TestPartnerClientLifecycle:
    async def test_register_use_narrow_scope_rotate_and_revoke(
        self, notifications_client: httpx.AsyncClient, notifications_sessions, settings: Settings
    ) -> None:
        client, s, org = notifications_client, settings, _org()
        scopes = ["referral.read", "webhooks.manage"]
        made = await register(client, s, org, scopes)
        assert made["org"] == org and made["scopes"] == scopes
        assert made["status"] == "active" and made["registration"] == "dynamic"
        assert made["token_endpoint"].startswith(s.issuer)
        cid, secret = made["client_id"], made["client_secret"]

        # the client's own token: its org, the partner role, exactly its scopes
        token = await token_for(s, cid, secret, scopes)
        r = await client.get("/webhook-subscriptions", headers=bearer(token))
        assert r.status_code == 200, r.text
        # within the partner role but outside its scopes: the token is refused, not the data
        r = await client.get("/messages", params={"referral_id": "x"}, headers=bearer(token))
        assert r.status_code == 403, r.text
        assert r.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="message_log.read"'
        )
        assert r.json()["error"] == "insufficient_scope"
        # a partner's client never manages clients (not a scope it can be given)
        r = await client.get("/partner-clients", headers=bearer(token))
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
        # nor may it ask the provider for a scope it was not registered with
        with pytest.raises(Unauthenticated):
            await token_for(s, cid, secret, ["message_log.read"])

        # the secret is nowhere in Waymark's row; the registration token only sealed
        rows = await q(
            notifications_sessions, "SELECT * FROM partner_client WHERE client_id = :c", c=cid
        )
        assert len(rows) == 1 and secret not in repr(tuple(rows[0]))
        sealed = rows[0].registration_token_sealed
        assert sealing.unseal(s, cid, sealed) not in repr(tuple(rows[0]))

        # rotate: the new secret is shown once; the old one is refused at once
        r = await client.post(f"/partner-clients/{made['id']}/secret", headers=admin(s, org))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        rotated = r.json()
        new_secret = rotated["client_secret"]
        assert new_secret != secret and rotated["secret_version"] == 2
        with pytest.raises(Unauthenticated, match="invalid_client"):
            await token_for(s, cid, secret, scopes)
        token = await token_for(s, cid, new_secret, scopes)
        r = await client.get("/webhook-subscriptions", headers=bearer(token))
        assert r.status_code == 200, r.text

        # the list shows it (no secret), the single read too
        r = await client.get("/partner-clients", headers=admin(s, org))
        assert [c["client_id"] for c in r.json()] == [cid] and "client_secret" not in r.text
        assert r.headers["x-total-count"] == "1"

        # revoke: deleted at the provider; the grant fails from now on
        r = await client.delete(f"/partner-clients/{made['id']}", headers=admin(s, org))
        assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
        with pytest.raises(Unauthenticated, match="invalid_client"):
            await token_for(s, cid, new_secret, scopes)
        again = await client.delete(f"/partner-clients/{made['id']}", headers=admin(s, org))
        assert again.status_code == 200 and again.json() == r.json()  # nothing changes
        r = await client.post(f"/partner-clients/{made['id']}/secret", headers=admin(s, org))
        assert r.status_code == 409, r.text
        rows = await q(
            notifications_sessions,
            "SELECT registration_token_sealed FROM partner_client WHERE client_id = :c",
            c=cid,
        )
        assert rows[0].registration_token_sealed is None

        audit = await q(
            notifications_sessions,
            "SELECT action, actor_org, actor_roles FROM audit_log "
            "WHERE resource_type = 'PartnerClient' AND resource_id = :c ORDER BY at",
            c=cid,
        )
        assert [a.action for a in audit] == ["register", "rotate_secret", "revoke"]
        assert {(a.actor_org, a.actor_roles) for a in audit} == {(org, "admin")}

    async def test_a_client_subscribes_only_to_the_events_its_scopes_allow(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        client, s, org = notifications_client, settings, _org()
        made = await register(client, s, org, ["webhooks.manage"])
        token = await token_for(s, made["client_id"], made["client_secret"], ["webhooks.manage"])
        r = await client.post(
            "/webhook-subscriptions",
            headers=bearer(token),
            json={
                "url": "http://127.0.0.1:9/hooks",
                "event_types": ["uk.waymark.referral.submitted"],
            },
        )
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "insufficient_scope" and r.json()["scope"] == "referral.read"
        r = await client.get("/webhook-subscriptions", headers=bearer(token))
        assert r.status_code == 200 and r.json() == []


class TestWhoMayManage:
    async def test_another_organisations_admin_gets_the_answer_of_absent(
        self, notifications_client: httpx.AsyncClient, notifications_sessions, settings: Settings
    ) -> None:
        client, s, org = notifications_client, settings, _org()
        made = await register(client, s, org, ["referral.read"])
        other = admin(s, _org())
        for method, path in [
            ("GET", f"/partner-clients/{made['id']}"),
            ("POST", f"/partner-clients/{made['id']}/secret"),
            ("DELETE", f"/partner-clients/{made['id']}"),
        ]:
            theirs = await client.request(method, path, headers=other)
            absent = await client.request(
                method, path.replace(made["id"], f"pcl_{uuid.uuid4().hex}"), headers=other
            )
            assert theirs.status_code == absent.status_code == 404, (method, theirs.text)
            assert made["client_id"] not in theirs.text and org not in theirs.text
        r = await client.get("/partner-clients", headers=other)
        assert r.status_code == 200 and r.json() == []
        # still active, and its secret still works
        await token_for(s, made["client_id"], made["client_secret"], ["referral.read"])
        await client.delete(f"/partner-clients/{made['id']}", headers=admin(s, org))

    @pytest.mark.parametrize("role", [r.value for r in Role if r is not Role.ADMIN])
    async def test_only_an_administrator_manages_clients(
        self, notifications_client: httpx.AsyncClient, settings: Settings, role: str
    ) -> None:
        h = auth(settings, role=role, org=_org(), ics=settings.ics)
        r = await notifications_client.post(
            "/partner-clients", headers=h, json={"name": "x", "scopes": ["referral.read"]}
        )
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await notifications_client.get("/partner-clients", headers=h)
        assert r.status_code == 403

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "x", "scopes": ["care_plan.read"]},
            {"name": "x", "scopes": ["message_context.read"]},
            {"name": "x", "scopes": ["clients.manage"]},
            {"name": "x", "scopes": ["nonsense"]},
            {"name": "x", "scopes": []},
            {"name": "", "scopes": ["referral.read"]},
            {"name": "a\nb", "scopes": ["referral.read"]},
            {"name": "x", "scopes": ["referral.read"], "client_secret": "mine"},
            {"name": "x", "scopes": ["referral.read"], "client_id": "has space"},
        ],
    )
    async def test_bad_registrations_are_a_422_problem_and_register_nothing(
        self,
        notifications_client: httpx.AsyncClient,
        notifications_sessions,
        settings: Settings,
        body: dict[str, Any],
    ) -> None:
        org = _org()
        r = await notifications_client.post(
            "/partner-clients", headers=admin(settings, org), json=body
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert not await q(
            notifications_sessions, "SELECT 1 FROM partner_client WHERE org = :o", o=org
        )

    async def test_the_scopes_an_admin_may_give_are_listed(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await notifications_client.get(
            "/partner-clients/scopes", headers=admin(settings, _org())
        )
        assert r.status_code == 200
        assert {x["scope"] for x in r.json()} >= {"referral.read", "webhooks.manage"}
        assert "message_context.read" not in r.text


class TestHandRegisteredClients:
    async def test_a_client_registered_by_hand_is_recorded_not_rotated(
        self, notifications_client: httpx.AsyncClient, notifications_sessions, settings: Settings
    ) -> None:
        client, s, org = notifications_client, settings, _org()
        cid = f"manual-{uuid.uuid4().hex[:8]}"
        made = await register(client, s, org, ["referral.read"], client_id=cid)
        assert made["registration"] == "manual" and made["client_id"] == cid
        assert "client_secret" not in made
        r = await client.post(
            "/partner-clients",
            headers=admin(s, org),
            json={"name": "again", "scopes": ["referral.read"], "client_id": cid},
        )
        assert r.status_code == 409
        r = await client.post(f"/partner-clients/{made['id']}/secret", headers=admin(s, org))
        assert r.status_code == 409 and "by hand" in r.json()["detail"]
        r = await client.delete(f"/partner-clients/{made['id']}", headers=admin(s, org))
        assert r.json()["status"] == "revoked"
        audit = await q(
            notifications_sessions,
            "SELECT action, detail FROM audit_log WHERE resource_type = 'PartnerClient' "
            "AND resource_id = :c ORDER BY at",
            c=cid,
        )
        assert [a.action for a in audit] == ["record", "revoke"]
        assert "by hand" in audit[1].detail


class TestProviderAway:
    async def test_registering_while_the_provider_is_away_is_a_503_and_records_nothing(
        self, notifications_sessions, settings: Settings
    ) -> None:
        # an issuer on a port nothing listens on (the instance's range, unused)
        away = settings.model_copy(
            update={"oidc_issuer": f"http://127.0.0.1:{settings.idp_port + 9}"}
        )
        org = _org()
        principal = Principal(user="ada", roles=frozenset({Role.ADMIN}), org=org, ics=settings.ics)
        with pytest.raises(IssuerUnavailable) as refused:
            async with unit_of_work(notifications_sessions) as session:
                await handlers.register_client(
                    session=session,
                    principal=principal,
                    cmd=ClientCreate(name="Acme", scopes=["referral.read"]),
                    settings=away,
                )
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
        assert not await q(
            notifications_sessions, "SELECT 1 FROM partner_client WHERE org = :o", o=org
        )
        with pytest.raises(IssuerUnavailable):
            await provider.delete(away, uri=f"{away.issuer}/reg/x", token="t")

    async def test_without_the_initial_access_token_onboarding_says_so(
        self, settings: Settings, tmp_path
    ) -> None:
        missing = settings.model_copy(update={"oidc_registration_token_path": tmp_path / "none"})
        with pytest.raises(IssuerUnavailable, match="initial access token"):
            await provider.register(missing, {"client_name": "x"})

    async def test_a_wrong_initial_access_token_is_refused_by_the_provider(
        self, settings: Settings, tmp_path
    ) -> None:
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token")
        s = settings.model_copy(update={"oidc_registration_token_path": wrong})
        with pytest.raises(IssuerUnavailable, match="refused"):
            await provider.register(s, {"client_name": "x", "grant_types": ["client_credentials"]})
