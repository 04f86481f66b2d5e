"""Partner onboarding's pure rules: the scopes a partner's client may hold, names, client ids,
the registration's metadata, what a revoked or hand-registered client allows; and the sealing
of the registration access token (a key file of its own, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifications.clients import domain, sealing
from shared.access import GRANTS, Capability, Role
from shared.errors import Conflict, ValidationFailed
from shared.settings import Settings

SERVICE_ONLY = [c for c in GRANTS[Role.SERVICE] if c not in GRANTS[Role.PARTNER]]
NEVER_PARTNER = [c for c in Capability if c not in GRANTS[Role.PARTNER]]


class TestScopes:
    def test_every_partner_scope_is_a_capability_the_partner_role_has(self) -> None:
        assert set(domain.PARTNER_SCOPES) <= set(GRANTS[Role.PARTNER])
        assert all(words for words in domain.PARTNER_SCOPES.values())

    @pytest.mark.parametrize("cap", NEVER_PARTNER, ids=str)
    def test_a_capability_a_partner_never_has_is_refused(self, cap: Capability) -> None:
        with pytest.raises(ValidationFailed) as refused:
            domain.check_scopes(["referral.read", cap.value])
        assert (
            cap.value in refused.value.message
            and "referral.read" not in refused.value.message.split(";")[0]
        )

    def test_service_only_and_admin_capabilities_are_among_the_refused(self) -> None:
        refused = {c.value for c in NEVER_PARTNER}
        assert {
            "message_context.read",
            "patient_contact.read",
            "referral.history_import",
        } <= refused
        assert {"clients.manage", "integration.manage", "temporal.codec"} <= refused
        assert {c.value for c in SERVICE_ONLY} <= refused

    @pytest.mark.parametrize(
        "bad", ["", "referral", "REFERRAL.READ", "referral.read ", "openid", "*"]
    )
    def test_unknown_scopes_are_refused(self, bad: str) -> None:
        with pytest.raises(ValidationFailed):
            domain.check_scopes([bad])

    def test_no_scope_at_all_is_refused(self) -> None:
        with pytest.raises(ValidationFailed, match="at least one"):
            domain.check_scopes([])

    def test_scopes_are_deduplicated_and_sorted(self) -> None:
        got = domain.check_scopes(["webhooks.manage", "referral.read", "webhooks.manage"])
        assert got == ["referral.read", "webhooks.manage"]

    def test_every_partner_scope_is_accepted(self) -> None:
        every = [c.value for c in domain.PARTNER_SCOPES]
        assert domain.check_scopes(every) == sorted(every)


class TestNamesAndIds:
    @pytest.mark.parametrize("name", ["Acme booking", "  Acme  ", "é" * 80, "x"])
    def test_good_names(self, name: str) -> None:
        assert domain.check_name(name) == name.strip()

    @pytest.mark.parametrize("name", ["", "   ", "x" * 81, "Acme\nbooking", "a\x00b", "a\x7fb"])
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(ValidationFailed):
            domain.check_name(name)

    @pytest.mark.parametrize("cid", ["acme-booking", "0oa1b2c3", "spiffe:x@y.z", "a" * 200])
    def test_good_client_ids(self, cid: str) -> None:
        assert domain.check_client_id(cid) == cid

    @pytest.mark.parametrize("cid", ["", "a b", "a/b", "a" * 201, "é"])
    def test_bad_client_ids(self, cid: str) -> None:
        with pytest.raises(ValidationFailed):
            domain.check_client_id(cid)


class TestMetadata:
    def test_the_registration_asks_for_client_credentials_only_with_waymarks_claims(self) -> None:
        m = domain.registration_metadata(
            name="Acme", org="ORG-A", ics="ICS-1", scopes=["a", "b"], secret_version=3
        )
        assert m["grant_types"] == ["client_credentials"]
        assert m["response_types"] == [] and m["redirect_uris"] == []
        assert m["token_endpoint_auth_method"] == "client_secret_basic"
        assert m["scope"] == "a b"
        assert (m["org"], m["ics"], m["waymark_roles"]) == ("ORG-A", "ICS-1", ["partner"])
        assert m["waymark_secret_version"] == 3
        assert "client_secret" not in m and "client_id" not in m


class TestChanges:
    def test_a_revoked_client_cannot_be_rotated(self) -> None:
        with pytest.raises(Conflict, match="revoked"):
            domain.check_may_change("revoked", "dynamic", action="rotate its secret")

    def test_a_hand_registered_client_is_rotated_at_the_provider(self) -> None:
        with pytest.raises(Conflict, match="by hand"):
            domain.check_may_change("active", "manual", action="rotate its secret")

    def test_an_active_registered_client_may_be_rotated(self) -> None:
        domain.check_may_change("active", "dynamic", action="rotate its secret")


class TestSealing:
    def settings(self, tmp_path: Path, **kw: object) -> Settings:
        return Settings(home=tmp_path, partner_client_seal_key_path=tmp_path / "k", **kw)  # type: ignore[arg-type]

    def test_a_sealed_token_opens_for_its_client_only(self, tmp_path: Path) -> None:
        s = self.settings(tmp_path)
        sealed = sealing.seal(s, "client-a", "rat-secret-value")
        assert b"rat-secret-value" not in sealed
        assert sealing.unseal(s, "client-a", sealed) == "rat-secret-value"
        with pytest.raises(ValueError):
            sealing.unseal(s, "client-b", sealed)  # copied onto another row

    def test_the_key_is_made_locally_owner_only_and_sealing_is_randomised(
        self, tmp_path: Path
    ) -> None:
        s = self.settings(tmp_path)
        a, b = sealing.seal(s, "c", "t"), sealing.seal(s, "c", "t")
        assert a != b
        key = tmp_path / "k"
        assert len(key.read_bytes()) == 32 and key.stat().st_mode & 0o777 == 0o600

    def test_another_key_does_not_open_it(self, tmp_path: Path) -> None:
        s = self.settings(tmp_path)
        sealed = sealing.seal(s, "c", "t")
        (tmp_path / "k").write_bytes(b"\x00" * 32)
        with pytest.raises(ValueError):
            sealing.unseal(s, "c", sealed)

    def test_production_is_never_given_a_made_up_key(self, tmp_path: Path) -> None:
        s = self.settings(
            tmp_path,
            deployment_mode="production",
            oidc_issuer="https://idp.example",
            dashboard_public_url="https://waymark.example",
        )
        with pytest.raises(sealing.SealKeyMissing):
            sealing.seal(s, "c", "t")
        assert not (tmp_path / "k").exists()

    def test_a_key_of_the_wrong_length_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "k").write_bytes(b"short")
        with pytest.raises(sealing.SealKeyMissing):
            sealing.seal(self.settings(tmp_path), "c", "t")
