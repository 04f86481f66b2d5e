"""The local broker's identity files: passwords made once and owner-only, and a data directory
of an older clone's plaintext broker recognised so `waymark up` formats it anew."""

from __future__ import annotations

from devtools.stack import kafka
from devtools.stack.kafka_acls import BROKER_USER, acl_request, ensure_password, ensure_passwords
from shared.kafka_principals import ADMIN, USERS, all_acl_rules
from shared.settings import Settings


class TestPasswords:
    def test_each_principal_gets_one_owner_only_password_made_once(self, tmp_path):
        first = ensure_passwords(tmp_path)
        assert set(first) == {*USERS, BROKER_USER}
        assert all(made for _, made in first.values())
        assert len({pw for pw, _ in first.values()}) == len(first)  # none shared
        for user in first:
            path = tmp_path / "kafka" / "users" / f"{user}.password"
            assert path.stat().st_mode & 0o777 == 0o600
        again = ensure_passwords(tmp_path)
        assert {u: pw for u, (pw, _) in again.items()} == {u: pw for u, (pw, _) in first.items()}
        assert not any(made for _, made in again.values())

    def test_a_lost_password_file_is_made_anew_and_marked_so(self, tmp_path):
        old, _ = ensure_password(tmp_path, "referrals")
        (tmp_path / "kafka" / "users" / "referrals.password").unlink()
        new, made = ensure_password(tmp_path, "referrals")
        assert made and new != old


class TestDataDirectory:
    def test_a_plaintext_brokers_data_is_not_taken_for_a_sasl_one(self, tmp_path):
        s = Settings(home=tmp_path)
        data = tmp_path / "kafka" / "data"
        assert not kafka._formatted_for_sasl(s)  # nothing formatted yet
        data.mkdir(parents=True)
        (data / "meta.properties").write_text("version=1\n")
        assert not kafka._formatted_for_sasl(s)  # an older clone's plaintext broker
        kafka._sasl_marker(s).write_text("SCRAM-SHA-512 x\n")
        assert kafka._formatted_for_sasl(s)
        (data / "meta.properties").unlink()  # data wiped (the faults stack does): format again
        assert not kafka._formatted_for_sasl(s)


class TestAclRequest:
    def test_the_request_covers_the_instances_own_names_and_the_table(self, tmp_path):
        s = Settings(home=tmp_path, topic_prefix="h9.")
        request = acl_request(s, ensure_passwords(tmp_path))
        managed = request["managed"]
        assert all(m["name"].startswith("h9.") for m in managed)  # type: ignore[index]
        assert {"type": "GROUP", "name": "h9.notifications"} in managed  # type: ignore[operator]
        assert len(request["acls"]) == len(all_acl_rules("h9."))  # type: ignore[arg-type]
        # the admin is who applies them, never a user the tool alters
        assert request["admin"]["user"] == ADMIN  # type: ignore[index]
        assert ADMIN not in {u["user"] for u in request["users"]}  # type: ignore[attr-defined]
