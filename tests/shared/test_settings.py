"""Settings (shared/settings.py): defaults, overrides, fail-fast validation, derived values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import API_SERVICES, Settings, settings_env

INFRA_PORTS = [
    "pg_port",
    "kafka_port",
    "kafka_controller_port",
    "temporal_port",
    "temporal_ui_port",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WAYMARK_* variable of the test session leaks into these tests (restored after)."""
    for name in list(os.environ):
        if name.upper().startswith("WAYMARK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


class TestDefaults:
    def test_defaults_describe_the_local_stack(self, tmp_path: Path) -> None:
        s = Settings()
        assert s.instance == "dev"
        assert s.home == tmp_path / ".waymark"
        assert (s.pg_host, s.pg_port, s.pg_user, s.db_name) == (
            "127.0.0.1",
            54329,
            "waymark_owner",
            "waymark",
        )
        assert (s.kafka_port, s.kafka_controller_port) == (19092, 19093)
        assert (s.temporal_port, s.temporal_ui_port) == (17233, 18233)
        assert s.temporal_namespace == "waymark"
        assert s.api_port_base == 18100
        assert s.topic_prefix == ""
        assert (s.oidc_issuer, s.jwt_audience) == ("", "waymark")
        # no issuer set: the local provider of the instance, on api_port_base + 40
        assert s.issuer == "http://127.0.0.1:18140" and s.oidc_claim_mapping == "waymark"
        assert s.otlp_endpoint == ""

    def test_default_ports_avoid_system_installs(self) -> None:
        s = Settings()
        assert {s.pg_port, s.kafka_port, s.temporal_port}.isdisjoint({5432, 9092, 7233})

    def test_derived_addresses_follow_the_ports(self) -> None:
        s = Settings(
            pg_port=6000,
            kafka_port=6001,
            temporal_port=6002,
            pg_user="u",
            pg_password="p",
            db_name="d",
            pg_host="db",
        )
        assert s.bootstrap_servers == "127.0.0.1:6001"
        assert s.temporal_target == "127.0.0.1:6002"
        assert s.database_url == "postgresql+asyncpg://u:p@db:6000/d"

    def test_explicit_addresses_win_over_ports(self) -> None:
        s = Settings(kafka_bootstrap="kafka:9092", temporal_address="temporal:7233")
        assert s.bootstrap_servers == "kafka:9092"
        assert s.temporal_target == "temporal:7233"

    def test_run_dir_is_per_instance_and_keys_live_under_home(self, tmp_path: Path) -> None:
        s = Settings(home=tmp_path / "h", instance="ci-7")
        assert s.run_dir == tmp_path / "h" / "run" / "ci-7"
        assert s.logs_dir == tmp_path / "h" / "logs"
        assert s.local_idp_dir == tmp_path / "h" / "keys" / "idp" / "ci-7"
        assert s.pseudonym_key_file() == tmp_path / "h" / "keys" / "pseudonym.key"

    def test_configured_key_paths_win(self, tmp_path: Path) -> None:
        s = Settings(pseudonym_key_path=tmp_path / "p.key")
        assert s.pseudonym_key_file() == tmp_path / "p.key"

    def test_settings_are_frozen(self) -> None:
        s = Settings()
        with pytest.raises(ValidationError):
            s.pg_port = 1234  # type: ignore[misc]


class TestOverrides:
    def test_environment_variables_override_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WAYMARK_INSTANCE", "ci")
        monkeypatch.setenv("WAYMARK_PG_PORT", "6543")
        monkeypatch.setenv("WAYMARK_TOPIC_PREFIX", "ci.")
        monkeypatch.setenv("WAYMARK_CONSUMER_BACKOFF_SECONDS", "0.05")
        s = Settings()
        assert (s.instance, s.pg_port, s.topic_prefix) == ("ci", 6543, "ci.")
        assert s.consumer_backoff_seconds == 0.05

    def test_keyword_arguments_override_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_DB_NAME", "from_env")
        monkeypatch.setenv("WAYMARK_API_PORT_BASE", "18300")
        s = Settings(db_name="from_kwargs", api_port_base=18400)
        assert s.db_name == "from_kwargs"
        assert s.api_port_base == 18400

    def test_unknown_environment_variables_are_ignored(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_NOT_A_SETTING", "x")
        assert Settings().instance == "dev"

    def test_a_malformed_number_in_the_environment_fails_fast(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_PG_PORT", "five")
        with pytest.raises(ValidationError):
            Settings()


class TestValidation:
    @pytest.mark.parametrize("field", INFRA_PORTS + ["api_port_base"])
    @pytest.mark.parametrize("port", [0, -1, 65536, 70000])
    def test_a_port_out_of_range_is_rejected(self, field: str, port: int) -> None:
        with pytest.raises(ValidationError) as exc:
            Settings(**{field: port})
        assert "out of range" in str(exc.value)

    @pytest.mark.parametrize("port", [1, 65535])
    def test_ports_at_the_ends_of_the_range_are_accepted(self, port: int) -> None:
        assert Settings(pg_port=port).pg_port == port

    def test_an_out_of_range_port_from_the_environment_is_rejected(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_KAFKA_PORT", "99999")
        with pytest.raises(ValidationError):
            Settings()

    @pytest.mark.parametrize(
        "a, b", [(a, b) for i, a in enumerate(INFRA_PORTS) for b in INFRA_PORTS[i + 1 :]]
    )
    def test_two_infrastructure_services_on_one_port_are_rejected(self, a: str, b: str) -> None:
        with pytest.raises(ValidationError) as exc:
            Settings(**{a: 40000, b: 40000})
        assert "ports must differ" in str(exc.value)

    def test_distinct_infrastructure_ports_are_accepted(self) -> None:
        s = Settings(
            pg_port=40000,
            kafka_port=40001,
            kafka_controller_port=40002,
            temporal_port=40003,
            temporal_ui_port=40004,
        )
        assert s.pg_port == 40000

    @pytest.mark.parametrize(
        "name", ["", "-", "a b", "../etc", "a/b", "a.b", "a_b", "x;rm", "dev\n"]
    )
    def test_an_instance_that_is_not_a_name_is_rejected(self, name: str) -> None:
        with pytest.raises(ValidationError):
            Settings(instance=name)

    @pytest.mark.parametrize("name", ["dev", "test", "test2", "ci-42", "A-b-C"])
    def test_instance_names_of_letters_digits_and_dashes_are_accepted(self, name: str) -> None:
        assert Settings(instance=name).instance == name


class TestDerivedNames:
    def test_topic_is_prefixed(self) -> None:
        assert (
            Settings(topic_prefix="test2.").topic("waymark.referrals.v1")
            == "test2.waymark.referrals.v1"
        )

    def test_topic_without_prefix_is_the_bare_name(self) -> None:
        assert Settings().topic("waymark.referrals.v1") == "waymark.referrals.v1"

    def test_each_service_has_its_own_api_port_counted_from_the_base(self) -> None:
        s = Settings(api_port_base=18300)
        assert s.api_port("referrals") == 18301
        assert s.api_port("directory") == 18302
        assert s.api_port("care_plans") == 18303
        assert s.api_port("notifications") == 18304
        assert len({s.api_port(x) for x in API_SERVICES}) == len(API_SERVICES)

    def test_the_journeys_read_model_has_a_schema_but_no_api_port(self) -> None:
        with pytest.raises(ValueError):
            Settings().api_port("journeys")

    def test_an_unknown_service_has_no_port(self) -> None:
        with pytest.raises(ValueError):
            Settings().api_port("billing")


class TestSettingsEnv:
    def _roundtrip(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
        for name in list(os.environ):
            if name.upper().startswith("WAYMARK_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith("WAYMARK_"):
                monkeypatch.setenv(name, value)
        return Settings()

    def test_a_child_process_environment_reproduces_equal_settings(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        s = Settings(
            home=tmp_path / "home",
            instance="rt-1",
            pg_port=41000,
            kafka_port=41001,
            kafka_controller_port=41002,
            temporal_port=41003,
            temporal_ui_port=41004,
            db_name="waymark_rt",
            topic_prefix="rt.",
            temporal_namespace="waymark-rt",
            api_port_base=41100,
            consumer_backoff_seconds=0.05,
            consumer_max_attempts=3,
            relay_poll_seconds=0.5,
            pseudonym_key_path=tmp_path / "p.key",
            otlp_endpoint="http://collector:4318",
        )
        env = settings_env(s)
        assert env["WAYMARK_INSTANCE"] == "rt-1"
        assert env["WAYMARK_PG_PORT"] == "41000"
        assert env["WAYMARK_HOME"] == str(tmp_path / "home")
        assert self._roundtrip(env, monkeypatch) == s

    def test_defaults_round_trip(self, monkeypatch: pytest.MonkeyPatch) -> None:
        s = Settings()
        assert self._roundtrip(settings_env(s), monkeypatch) == s

    def test_the_rest_of_the_environment_is_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SOMETHING_ELSE", "kept")
        env = settings_env(Settings())
        assert env["SOMETHING_ELSE"] == "kept"
        assert env["PATH"] == os.environ["PATH"]

    def test_an_empty_value_is_not_overridden_by_the_parents_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # settings built in code (e.g. a test's or a CLI's overrides) say "no topic prefix"
        # while the parent process has one: the child must see the settings, not the parent
        monkeypatch.setenv("WAYMARK_TOPIC_PREFIX", "parent.")
        monkeypatch.setenv("WAYMARK_OTLP_ENDPOINT", "http://parent:4318")
        s = Settings(topic_prefix="", otlp_endpoint="", instance="child")
        env = settings_env(s)
        assert self._roundtrip(env, monkeypatch) == s

    def test_an_unset_key_path_is_not_overridden_by_the_parents_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_PSEUDONYM_KEY_PATH", str(tmp_path / "parent.key"))
        s = Settings(pseudonym_key_path=None)
        env = settings_env(s)
        assert self._roundtrip(env, monkeypatch).pseudonym_key_file() == s.pseudonym_key_file()


class TestApiPorts:
    def test_api_ports_that_clash_with_an_infrastructure_port_are_rejected(self) -> None:
        with pytest.raises(ValidationError, match="clash"):
            Settings(api_port_base=54328)  # referrals would listen on PostgreSQL's 54329

    def test_api_ports_past_65535_are_rejected(self) -> None:
        with pytest.raises(ValidationError, match="exceed"):
            Settings(api_port_base=65534)
