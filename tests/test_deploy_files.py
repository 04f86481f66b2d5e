"""The deployment files agree with each other and with the code they deploy.

Dockerfile, docker-compose.yml and every YAML under deploy/k8s are parsed (PyYAML) and compared
with `shared.settings.Settings` (every WAYMARK_* name is a real setting, every API listens on
`Settings.api_port`), `devtools.stack.parts()` (every Waymark process is deployed, with the
command `waymark run <part>`; `local_only` parts such as `dev-sinks` run in Compose but never in
Kubernetes) and `shared.topics.all_topics()` (the KafkaTopic resources are the topics the code
creates).
No network, Docker engine or cluster is needed. `kubectl kustomize` (in the machine image)
renders the manifests; `docker compose config` is not run, as this machine's docker CLI has no
compose plugin.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.stack import part_name, parts
from shared.settings import API_SERVICES, Settings
from shared.topics import all_topics

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"

INFRA_SERVICES = {"postgres", "kafka", "temporal", "temporal-ui"}
# one-shots on the infrastructure's images: the Kafka principals' credentials and ACLs
INFRA_ONE_SHOTS = {"kafka-users"}
# what a Kafka client sets besides the shared settings: its own principal (test_deploy_security)
KAFKA_CLIENT_ENV = {
    "WAYMARK_KAFKA_SECURITY_PROTOCOL",
    "WAYMARK_KAFKA_SASL_MECHANISM",
    "WAYMARK_KAFKA_SASL_USERNAME",
    "WAYMARK_KAFKA_SASL_PASSWORD_PATH",
}
ONE_SHOTS = {"migrate": ["waymark", "migrate"], "topics": ["waymark", "topics"]}
KEYS_DIR = "/var/lib/waymark/keys"
# Files under deploy/k8s that are deliberately not in kustomization.yaml: the Secret template
# (applying its placeholders would overwrite the real Secrets) and the Temporal Helm values.
NOT_KUSTOMIZED = {"secrets.template.yaml", "temporal-values.yaml"}
# Deployments without a liveness probe, and why (the worker has no per-process health signal)
NO_LIVENESS_PROBE = {"journeys-worker"}
# the API port base Compose and Kubernetes set: service n listens on 7999 + n (referrals 8000)
CONTAINER_API_PORT_BASE = 7999
# Compose publishes each API on the host port `waymark up` uses (the settings' default base)
HOST_API_PORT_BASE = Settings.model_fields["api_port_base"].default
# the part that sends email, SMS and webhooks: the only one with egress beyond the cluster and
# the only one holding the provider credentials
DISPATCHER = "notifications-dispatcher"
NOTIFICATION_SECRETS = {"waymark-smtp", "waymark-notify"}
# the policy letting the APIs and the OAuth clients reach the ICS's identity provider on 443
IDP_EGRESS = "waymark-identity-provider-egress"
# the HL7 v2 listener: the one part besides the APIs that senders reach (MLLP, TLS in production)
MLLP = "integration-mllp"
MLLP_TLS_SECRET = "waymark-integration-mllp-tls"
# what production egress on 443 must never reach (the SSRF guard's rule, repeated in the network)
NON_PUBLIC_V4 = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
)


# ---- loading -----------------------------------------------------------------------------------


def app_parts() -> set[str]:
    """Every Waymark process: what Compose runs (the local stand-ins included)."""
    return {p.name for p in parts() if p.kind == "app"}


def local_only_parts() -> set[str]:
    """Parts only a local stack runs (e.g. dev-sinks, standing in for SMTP and GOV.UK Notify)."""
    return {p.name for p in parts() if p.kind == "app" and p.local_only}


def deployed_parts() -> set[str]:
    """The parts Kubernetes runs."""
    return app_parts() - local_only_parts()


def api_part(service: str) -> str:
    return part_name(service, "api")


def container_api_port(service: str) -> int:
    return Settings(api_port_base=CONTAINER_API_PORT_BASE).api_port(service)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def waymark_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the Waymark image (their command starts with `waymark`)."""
    return {
        name: svc
        for name, svc in services().items()
        if (svc.get("command") or [None])[0] == "waymark"
    }


@cache
def k8s_files() -> dict[str, list[dict[str, Any]]]:
    """Every YAML file under deploy/k8s, relative path -> its (non-empty) documents."""
    files = {}
    for path in sorted(K8S.rglob("*.y*ml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        files[path.relative_to(K8S).as_posix()] = docs
    return files


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s (the Secret template included)."""
    return [
        d
        for docs in k8s_files().values()
        for d in docs
        if isinstance(d, dict)
        and "apiVersion" in d
        and "kind" in d
        and d["kind"] != "Kustomization"
    ]


def objects(kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = objects(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in objects(kind)}


def kustomization() -> dict[str, Any]:
    return k8s_files()["kustomization.yaml"][0]


def temporal_values() -> dict[str, Any]:
    return k8s_files()["temporal-values.yaml"][0]


def configmap_data() -> dict[str, str]:
    return by_name("ConfigMap")["waymark-config"]["data"]


def secret_keys() -> dict[str, set[str]]:
    """Secret name -> its keys, from the Secret template."""
    return {
        name: set(s.get("stringData", {})) | set(s.get("data", {}))
        for name, s in by_name("Secret").items()
    }


def operator_secret_keys() -> dict[str, set[str]]:
    """Secrets the operators make (never the template): Strimzi's, one per KafkaUser (its
    password) and the cluster CA certificate; cert-manager's, one per Certificate in the
    Temporal values' extraObjects (tls.crt, tls.key and the issuing CA's ca.crt)."""
    made = {u["metadata"]["name"]: {"password", "sasl.jaas.config"} for u in objects("KafkaUser")}
    made[f"{one('Kafka')['metadata']['name']}-cluster-ca-cert"] = {
        "ca.crt",
        "ca.p12",
        "ca.password",
    }
    for obj in temporal_values().get("extraObjects", []):
        if obj["kind"] == "Certificate":
            made[obj["spec"]["secretName"]] = {"tls.crt", "tls.key", "ca.crt"}
    return made


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def compose_value(value: object) -> str:
    """A Compose value as `docker compose` would see it with nothing set in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def settings_from(env: dict[str, object]) -> Settings:
    """Build Settings from WAYMARK_* variables exactly as given (init values beat the process
    environment, which the test session's conftest changes)."""

    def value(v: object) -> object:
        # JSON-valued settings (maps, lists) arrive as text, as the environment carries them
        if isinstance(v, str) and v[:1] in ("[", "{"):
            return json.loads(v)
        return v

    return Settings(
        **{
            k.removeprefix("WAYMARK_").lower(): value(v)
            for k, v in env.items()
            if k.startswith("WAYMARK_")
        }
    )


#: settings issue #18 adds (identity: shared/auth.py and shared/settings.py; Kafka SASL; Temporal
#: TLS and the payload codec), set by the deployments before they are in Settings on this
#: branch. Once merged every one is a real field and this set can go.
ARRIVING_WITH_18: set[str] = set()  # every setting the manifests name has landed


def assert_real_settings(names: set[str], where: str) -> None:
    assert names, f"no WAYMARK_* variables found in {where}"
    unknown = {
        n
        for n in names - ARRIVING_WITH_18
        if n.removeprefix("WAYMARK_").lower() not in Settings.model_fields
    }
    assert not unknown, f"{where} sets WAYMARK_* names Settings does not have: {sorted(unknown)}"


#: the key files Compose keeps in the waymark-keys volume (settings that name a path)
COMPOSE_KEY_FILES = (
    "WAYMARK_PSEUDONYM_KEY_PATH",
    "WAYMARK_SMS_API_KEY_PATH",
)


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    assert users, "the Dockerfile sets no USER"
    return int(users[-1].split(":")[0])


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]


def workloads() -> list[dict[str, Any]]:
    return objects("Deployment") + objects("Job")


# ---- Dockerfile --------------------------------------------------------------------------------


class TestDockerfile:
    def test_builds_from_python_3_11_slim_and_installs_the_project(self) -> None:
        text = DOCKERFILE.read_text()
        assert re.findall(r"^FROM\s+(\S+)", text, flags=re.M)[-1] == "python:3.11-slim"
        assert re.search(r"pip install \.(\s|$)", text)

    def test_runs_as_a_numeric_non_root_user(self) -> None:
        assert dockerfile_uid() != 0

    def test_default_command_prints_help(self) -> None:
        cmds = re.findall(r"^CMD\s+(.+)$", DOCKERFILE.read_text(), flags=re.M)
        assert yaml.safe_load(cmds[-1]) == ["waymark", "--help"]

    def test_sets_only_real_settings(self) -> None:
        names = set(re.findall(r"\b(WAYMARK_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
        assert_real_settings(names, "Dockerfile")

    def test_copies_no_local_state_or_keys(self) -> None:
        copies = re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE.read_text(), flags=re.M)
        for line in copies:
            assert ".waymark" not in line and ".pem" not in line and ".key" not in line, line
        ignored = (ROOT / ".dockerignore").read_text().split()
        assert ".waymark" in ignored and "**/*.pem" in ignored and "**/*.key" in ignored


# ---- docker-compose.yml ------------------------------------------------------------------------


class TestCompose:
    def test_has_the_infrastructure_on_pinned_official_images(self) -> None:
        svcs = services()
        assert INFRA_SERVICES <= set(svcs)
        assert svcs["postgres"]["image"] == "postgres:15"
        assert svcs["kafka"]["image"] == "apache/kafka:4.1.1"
        for name, repo in (("temporal", "temporalio/auto-setup"), ("temporal-ui", "temporalio/ui")):
            image_repo, _, tag = svcs[name]["image"].partition(":")
            assert image_repo == repo and re.fullmatch(r"\d+\.\d+\.\d+", tag), svcs[name]["image"]

    def test_postgres_is_checked_with_pg_isready(self) -> None:
        pg = services()["postgres"]
        assert "pg_isready" in pg["healthcheck"]["test"]
        assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg["volumes"])

    def test_kafka_is_one_kraft_node_that_creates_no_topics_by_itself(self) -> None:
        kafka = services()["kafka"]
        env = {k: str(v) for k, v in kafka["environment"].items()}
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
        # the controller listener is on the container's loopback: only the node itself uses it
        assert node == env["KAFKA_NODE_ID"] and voter.startswith("127.0.0.1:")
        assert f"CONTROLLER://{voter}" in env["KAFKA_LISTENERS"].split(",")
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        for name in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            assert env[name] == "1", name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        check = " ".join(kafka["healthcheck"]["test"])
        assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in check
        assert "--command-config" in check  # it signs in: there is no anonymous way in
        assert any(str(v).endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])

    def test_kafka_advertises_the_address_waymark_connects_to(self) -> None:
        env = services()["kafka"]["environment"]
        [advertised] = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        advertised = advertised.removeprefix("SASL_PLAINTEXT://")
        assert advertised == compose()["x-waymark-env"]["WAYMARK_KAFKA_BOOTSTRAP"]

    def test_temporal_uses_the_shared_postgres_and_registers_waymarks_namespace(self) -> None:
        env = services()["temporal"]["environment"]
        waymark_env = compose()["x-waymark-env"]
        assert env["DB"] == "postgres12"
        assert env["POSTGRES_SEEDS"] == "postgres"
        assert env["DEFAULT_NAMESPACE"] == waymark_env["WAYMARK_TEMPORAL_NAMESPACE"]
        assert waymark_env["WAYMARK_TEMPORAL_ADDRESS"].split(":")[0] == "temporal"
        assert (
            services()["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"]
            == waymark_env["WAYMARK_TEMPORAL_ADDRESS"]
        )

    def test_runs_every_waymark_part_and_the_one_shot_jobs(self) -> None:
        svcs = services()
        for part in app_parts():
            assert part in svcs, f"docker-compose.yml has no service for {part}"
            if part == "idp":
                continue  # Node.js in its own image (TestComposeIdentityProvider)
            assert svcs[part]["command"] == ["waymark", "run", part]
        for name, command in ONE_SHOTS.items():
            assert svcs[name]["command"] == command
            assert svcs[name]["restart"] == "no"
        # the local provider runs in Node.js's image, not Waymark's
        assert set(waymark_services()) == app_parts() - {"idp"} | set(ONE_SHOTS)

    def test_every_waymark_service_uses_the_image_built_from_the_dockerfile(self) -> None:
        images = set()
        for name, svc in waymark_services().items():
            build = svc.get("build")
            assert build, f"{name} does not build the Waymark image"
            context = build if isinstance(build, str) else build["context"]
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (COMPOSE_FILE.parent / context).resolve() == ROOT
            assert (ROOT / dockerfile).resolve() == DOCKERFILE
            images.add(svc["image"])
        assert len(images) == 1, f"Waymark services use different images: {images}"

    def test_waymark_services_wait_for_the_jobs_and_healthy_infrastructure(self) -> None:
        svcs = services()
        for name, svc in waymark_services().items():
            deps = svc.get("depends_on")
            assert isinstance(deps, dict) and deps, f"{name}: depends_on must name conditions"
            for dep, spec in deps.items():
                assert dep in svcs, f"{name} depends on unknown service {dep}"
                expected = (
                    "service_completed_successfully"
                    if dep in set(ONE_SHOTS) | INFRA_ONE_SHOTS
                    else "service_healthy"
                )
                assert spec.get("condition") == expected, f"{name} -> {dep}"
                if expected == "service_healthy":
                    assert "healthcheck" in svcs[dep], f"{dep} has no healthcheck to wait for"
            if name in app_parts():
                assert set(ONE_SHOTS) <= set(deps), f"{name} must wait for migrate and topics"
        assert "postgres" in svcs["migrate"]["depends_on"]
        assert "kafka" in svcs["topics"]["depends_on"]
        for part in ("journeys-worker", "journeys-bridge"):
            assert "temporal" in svcs[part]["depends_on"]

    def test_every_waymark_variable_is_a_real_setting(self) -> None:
        names = set(compose()["x-waymark-env"])
        for svc in waymark_services().values():
            names |= {n for n in svc["environment"] if n.startswith("WAYMARK_")}
        assert_real_settings(names, "docker-compose.yml")
        for svc in waymark_services().values():
            env = {
                k: v
                for k, v in svc["environment"].items()
                if k != "WAYMARK_DB_ROLE" and k not in KAFKA_CLIENT_ENV
            }
            assert env == compose()["x-waymark-env"]

    def test_settings_point_at_the_compose_services(self) -> None:
        env = compose()["x-waymark-env"]
        s = settings_from({k: compose_value(v) for k, v in env.items()})
        svcs = services()
        assert s.pg_host == "postgres" and s.pg_port == 5432
        assert s.pg_user == "waymark_owner" and s.db_name == "waymark"
        assert str(s.pg_credentials_dir) == "/run/secrets"
        assert s.bootstrap_servers.split(":")[0] in svcs
        assert s.temporal_target.split(":")[0] in svcs
        assert s.api_host == "0.0.0.0"
        # the referrals API listens on the container port that is published
        published = [str(p) for p in svcs["referrals-api"]["ports"]]
        assert published == [f"127.0.0.1:18101:{s.api_port('referrals')}"]
        assert s.api_port("referrals") == 8000

    def test_keys_live_in_the_shared_named_volume(self) -> None:
        declared = set(compose()["volumes"])
        assert {"postgres-data", "kafka-data", "waymark-keys"} <= declared
        env = compose()["x-waymark-env"]
        for name, svc in waymark_services().items():
            assert f"waymark-keys:{KEYS_DIR}" in svc["volumes"], name
        for var in COMPOSE_KEY_FILES:
            assert env[var].startswith(KEYS_DIR + "/"), var
        assert env["WAYMARK_HOME"] == str(Path(KEYS_DIR).parent)

    def test_the_migrate_job_creates_every_key_file_in_the_volume(self, tmp_path: Path) -> None:
        # Compose has no other step that writes into waymark-keys before the processes start:
        # dev-sinks and the dispatcher read notify-api.key, every part the pseudonym key.
        # `waymark migrate` makes them with ensure_key_files (then migrates the database,
        # which Compose's own PostgreSQL serves, not this test)
        from devtools.cli import ensure_key_files

        env = {k: compose_value(v) for k, v in compose()["x-waymark-env"].items()}
        keys = tmp_path / "keys"
        for var in COMPOSE_KEY_FILES:
            env[var] = str(keys / Path(env[var]).relative_to(KEYS_DIR))
        env["WAYMARK_HOME"] = str(tmp_path)
        ensure_key_files(settings_from(env))
        for var in COMPOSE_KEY_FILES:
            assert Path(env[var]).is_file(), f"`waymark migrate` does not create {var}"
        before = {var: Path(env[var]).read_bytes() for var in COMPOSE_KEY_FILES}
        # and the local OpenID provider's configuration, which Compose's idp container reads
        settings = settings_from(env)
        config = json.loads((settings.local_idp_dir / "config.json").read_text())
        idp_command = services()["idp"]["command"][-1]
        assert f"/var/lib/waymark/keys/idp/{settings.instance}/config.json" in idp_command
        assert config["issuer"] == env["WAYMARK_OIDC_ISSUER"] == "http://idp:8039"
        assert (config["host"], config["port"]) == ("0.0.0.0", 8039)
        ensure_key_files(settings_from(env))  # a second migrate keeps every key
        assert {var: Path(env[var]).read_bytes() for var in COMPOSE_KEY_FILES} == before

    def test_passwords_come_from_secret_files_or_the_environment_not_the_file(self) -> None:
        env = compose()["x-waymark-env"]
        assert "WAYMARK_PG_PASSWORD" not in env
        pg = services()["postgres"]["environment"]
        assert "POSTGRES_PASSWORD" not in pg
        assert pg["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_superuser"
        passwords = [
            pg["WAYMARK_TEMPORAL_PG_PASSWORD"],
            services()["temporal"]["environment"]["POSTGRES_PWD"],
        ]
        for value in passwords:
            assert _INTERPOLATION.fullmatch(value), f"literal password in compose: {value!r}"
        for name, secret in compose()["secrets"].items():
            assert set(secret) == {"file"}, name
            assert secret["file"].startswith("${WAYMARK_COMPOSE_SECRETS:-./.waymark/"), name

    def test_every_port_is_published_on_loopback_only(self) -> None:
        for name, svc in services().items():
            for port in svc.get("ports", []):
                assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
        # local mode on 0.0.0.0 is allowed only because of that, and says so
        s = settings_from({k: compose_value(v) for k, v in compose()["x-waymark-env"].items()})
        assert s.deployment_mode == "local" and s.api_host == "0.0.0.0"
        assert s.api_loopback_published is True
        with pytest.raises(ValueError, match="loopback"):
            s.model_validate(s.model_dump() | {"api_loopback_published": False})

    def test_each_part_connects_as_its_own_role_with_only_its_own_secret(self) -> None:
        roles = Settings().pg_roles()
        # the Kafka principals' passwords are Compose secrets too (test_deploy_security.py)
        declared = {n for n in compose()["secrets"] if not n.startswith("kafka_")}
        assert declared == {"pg_superuser", *roles.values()}
        for name, svc in waymark_services().items():
            part = svc.get("environment", {}).get("WAYMARK_DB_ROLE")
            db_secrets = [n for n in svc.get("secrets", []) if not n.startswith("kafka_")]
            if name == "migrate":
                assert part == "owner"
            elif name in ("topics", "dev-sinks", "journeys-bridge"):
                assert part is None and not db_secrets, f"{name} needs no database"
                continue
            else:
                assert name.replace("-", "_").startswith(part), (name, part)
            assert db_secrets == [roles[part]], name
        pg = services()["postgres"]
        assert set(pg["secrets"]) == declared
        assert pg["environment"]["POSTGRES_USER"] == "postgres"
        init = "./deploy/compose/postgres-init.sh:/docker-entrypoint-initdb.d/"
        assert any(v.startswith(init) for v in pg["volumes"])
        script = (ROOT / "deploy" / "compose" / "postgres-init.sh").read_text()
        for role in roles.values():
            assert role in script or role.removeprefix("waymark_") in script, role
        assert not re.search(r"(?<!NO)SUPERUSER\b", script)
        # Temporal has its own role, not the superuser
        assert services()["temporal"]["environment"]["POSTGRES_USER"] == "temporal"

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_each_api_listens_publishes_and_is_checked_on_its_settings_port(
        self, service: str
    ) -> None:
        env = compose()["x-waymark-env"]
        assert int(env["WAYMARK_API_PORT_BASE"]) == CONTAINER_API_PORT_BASE
        port = container_api_port(service)
        assert (
            settings_from({k: compose_value(v) for k, v in env.items()}).api_port(service) == port
        )
        svc = services()[api_part(service)]
        host_port = Settings(api_port_base=HOST_API_PORT_BASE).api_port(service)
        assert [str(p) for p in svc["ports"]] == [f"127.0.0.1:{host_port}:{port}"], api_part(
            service
        )
        check = " ".join(svc["healthcheck"]["test"])
        assert re.findall(r"http://127\.0\.0\.1:(\d+)/", check) == [str(port)], check
        assert f"127.0.0.1:{port}/health" in check

    def test_every_heartbeat_part_is_checked_on_its_own_heartbeat_file(self) -> None:
        apis = {api_part(s) for s in API_SERVICES}
        for name in app_parts() - apis - NO_LIVENESS_PROBE - {"idp"}:
            test = " ".join(services()[name]["healthcheck"]["test"])
            assert f"'{name}.alive'" in test, name

    def test_the_dispatcher_sends_to_the_dev_sinks(self) -> None:
        env = compose()["x-waymark-env"]
        s = settings_from({k: compose_value(v) for k, v in env.items()})
        assert "dev-sinks" in local_only_parts()
        sinks = services()["dev-sinks"]
        assert sinks["command"] == ["waymark", "run", "dev-sinks"]
        # dev-sinks listens on api_port_base + 25 (SMTP) and + 26 (SMS) on api_host (0.0.0.0)
        assert s.smtp_target == ("dev-sinks", s.api_port_base + 25)
        assert s.sms_base_url == f"http://dev-sinks:{s.api_port_base + 26}"
        assert s.smtp_starttls is False and s.deployment_mode == "local"
        assert s.sms_api_key_path is not None
        assert s.sms_api_key_path.parent.as_posix() == KEYS_DIR
        deps = services()[DISPATCHER]["depends_on"]
        assert deps["dev-sinks"]["condition"] == "service_healthy"
        # the sinks are for the machine they run on: never published
        assert "ports" not in sinks

    # `docker compose config` cannot run here: the machine's docker CLI has no compose plugin
    # and there is no engine. The checks above are what this machine can verify.


# ---- deploy/k8s --------------------------------------------------------------------------------


class TestHeartbeatProbes:
    @staticmethod
    def _probes() -> dict[str, tuple[str, list[str]]]:
        """Every heartbeat check of Compose and Kubernetes, one per distinct wording: the
        command with its part's name taken out -> (the part, the command)."""
        found: dict[str, tuple[str, list[str]]] = {}
        checks = [
            (n, svc["healthcheck"]["test"][1:])
            for n, svc in services().items()
            if svc.get("healthcheck", {}).get("test", [""])[0] == "CMD"
        ]
        for name, d in by_name("Deployment").items():
            for kind in ("livenessProbe", "readinessProbe"):
                if "exec" in container(d).get(kind, {}):
                    checks.append((name, container(d)[kind]["exec"]["command"]))
        for name, cmd in checks:
            if f"'{name}.alive'" in " ".join(cmd):
                found.setdefault(" ".join(cmd).replace(name, "<part>"), (name, cmd))
        return found

    def test_every_heartbeat_probe_reads_the_heartbeat_a_process_writes(
        self, tmp_path: Path
    ) -> None:
        from shared.heartbeat import write_heartbeat
        from shared.settings import settings_env

        s = Settings(home=tmp_path, instance="probe")
        s.run_dir.mkdir(parents=True)
        probes = self._probes()
        assert probes
        for name, cmd in probes.values():
            heartbeat = s.run_dir / f"{name}.alive"
            heartbeat.unlink(missing_ok=True)
            argv = [sys.executable, *cmd[1:]]
            env = settings_env(s)
            missing = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=60)
            assert missing.returncode != 0, cmd
            write_heartbeat(heartbeat)
            fresh = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=60)
            assert fresh.returncode == 0, (cmd, fresh.stderr)


class TestKustomization:
    def test_every_yaml_file_parses_and_every_object_is_named(self) -> None:
        assert k8s_files(), "no YAML under deploy/k8s"
        for m in manifests():
            assert m["metadata"]["name"], m

    def test_lists_every_manifest_file_and_only_existing_files(self) -> None:
        listed = kustomization()["resources"]
        assert len(listed) == len(set(listed)), "a file is listed twice"
        for name in listed:
            assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
        manifest_files = {
            name
            for name, docs in k8s_files().items()
            if name != "kustomization.yaml"
            and any(isinstance(d, dict) and "kind" in d and "apiVersion" in d for d in docs)
        }
        assert set(listed) == manifest_files - NOT_KUSTOMIZED

    def test_keeps_the_secret_template_and_helm_values_out(self) -> None:
        listed = set(kustomization()["resources"])
        assert not listed & NOT_KUSTOMIZED
        for name in NOT_KUSTOMIZED:
            assert name in k8s_files(), f"{name} is missing"
        assert all(d.get("kind") == "Secret" for d in k8s_files()["secrets.template.yaml"])
        assert "kind" not in temporal_values()

    def test_everything_goes_into_the_waymark_namespace(self) -> None:
        assert kustomization()["namespace"] == "waymark"
        assert one("Namespace")["metadata"]["name"] == "waymark"
        for secret in objects("Secret"):
            assert secret["metadata"]["namespace"] == "waymark"

    def test_kubectl_renders_it(self) -> None:
        kubectl = shutil.which("kubectl")
        # every machine image of this workplace ships kubectl (Debian package `kubectl`)
        assert kubectl is not None, "rendering deploy/k8s needs kubectl: apt-get install kubectl"
        result = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
        expected = sum(len(k8s_files()[f]) for f in kustomization()["resources"])
        assert len(rendered) == expected
        image = kustomization()["images"][0]
        for doc in rendered:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "waymark", doc["metadata"]["name"]
            if doc["kind"] in ("Deployment", "Job"):
                assert container(doc)["image"] == f"{image['newName']}:{image['newTag']}"


class TestWorkloads:
    def test_a_deployment_runs_each_waymark_part(self) -> None:
        deployments = by_name("Deployment")
        assert set(deployments) == deployed_parts()
        for name, d in deployments.items():
            assert container(d)["command"] == ["waymark", "run", name]
            assert d["spec"]["replicas"] == 2, name

    def test_local_only_parts_are_not_deployed(self) -> None:
        assert local_only_parts(), "expected dev-sinks to be marked local_only"
        commands = [container(w)["command"] for w in workloads()]
        for part in local_only_parts():
            assert part not in by_name("Deployment"), f"{part} is local-only"
            assert not any(part in c for c in commands), f"a workload runs {part}"
        configured = settings_from(configmap_data())
        # so the dispatcher never falls back to the local sinks (127.0.0.1:<base + 25/26>)
        assert configured.smtp_host and configured.sms_api_base

    def test_migrations_run_as_a_job(self) -> None:
        job = by_name("Job")["waymark-migrate"]
        assert container(job)["command"] == ["waymark", "migrate"]
        assert pod_spec(job)["restartPolicy"] == "Never"

    def test_every_container_uses_the_waymark_image_that_kustomize_sets(self) -> None:
        names = {i["name"] for i in kustomization()["images"]}
        for w in workloads():
            assert container(w)["image"] in names, w["metadata"]["name"]
            assert container(w)["command"][0] == "waymark"

    def test_selectors_match_the_pod_labels(self) -> None:
        for d in objects("Deployment"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            for k, v in d["spec"]["selector"]["matchLabels"].items():
                assert labels.get(k) == v, d["metadata"]["name"]
            assert labels["app.kubernetes.io/name"] == "waymark"

    def test_resources_are_requested_and_limited(self) -> None:
        for w in workloads():
            res = container(w)["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), w["metadata"]["name"]
            assert "memory" in res["limits"], w["metadata"]["name"]

    def test_containers_run_locked_down_as_the_images_user(self) -> None:
        for w in workloads():
            name = w["metadata"]["name"]
            pod = pod_spec(w)["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] == dockerfile_uid(), name
            assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
            c = container(w)["securityContext"]
            assert c["readOnlyRootFilesystem"] is True, name
            assert c["allowPrivilegeEscalation"] is False, name
            assert c["capabilities"]["drop"] == ["ALL"], name
            assert pod_spec(w)["automountServiceAccountToken"] is False, name
            # with a read-only root, WAYMARK_HOME and /tmp must be writable volumes
            mounts = {m["mountPath"] for m in container(w)["volumeMounts"]}
            assert {configmap_data()["WAYMARK_HOME"], "/tmp"} <= mounts, name

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_http_parts_have_readiness_and_liveness_on_their_port(self, service: str) -> None:
        assert int(configmap_data()["WAYMARK_API_PORT_BASE"]) == CONTAINER_API_PORT_BASE
        expected = container_api_port(service)
        assert settings_from(configmap_data()).api_port(service) == expected
        api = container(by_name("Deployment")[api_part(service)])
        port = {p["name"]: p["containerPort"] for p in api["ports"]}
        assert list(port.values()) == [expected], api_part(service)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = api[probe]["httpGet"]
            assert get["path"] == "/health"
            assert port.get(get["port"], get["port"]) == expected, (api_part(service), probe)

    def test_other_parts_have_a_liveness_probe_unless_documented(self) -> None:
        for name, d in by_name("Deployment").items():
            c = container(d)
            if name in NO_LIVENESS_PROBE:
                assert "livenessProbe" not in c, f"{name} has a probe now: update the test"
                continue
            assert "livenessProbe" in c, f"{name} has no liveness probe"
            probe = c["livenessProbe"]
            if "exec" in probe:
                # the heartbeat file the process writes is named after the part
                assert f"'{name}.alive'" in " ".join(probe["exec"]["command"]), name

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_the_api_service_reaches_the_api_pods(self, service: str) -> None:
        name = api_part(service)
        svc = by_name("Service")[name]
        pods = by_name("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            assert pods.get(k) == v
        api_ports = {
            p["name"]: p["containerPort"] for p in container(by_name("Deployment")[name])["ports"]
        }
        [port] = svc["spec"]["ports"]
        assert api_ports.get(port["targetPort"], port["targetPort"]) == container_api_port(
            service
        ), name
        # other services call http://<service>:<its api_port>, the port it listens on
        assert port["port"] == container_api_port(service), name

    def test_only_the_apis_and_the_mllp_listener_have_services(self) -> None:
        assert set(by_name("Service")) == {api_part(s) for s in API_SERVICES} | {MLLP}

    def test_every_deployment_has_a_disruption_budget(self) -> None:
        pdbs = objects("PodDisruptionBudget")
        for name, d in by_name("Deployment").items():
            labels = d["spec"]["template"]["metadata"]["labels"]
            matching = [
                p
                for p in pdbs
                if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
            ]
            assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets"
            assert matching[0]["spec"]["minAvailable"] < d["spec"]["replicas"], name


class TestSettingsAndSecrets:
    def test_every_waymark_variable_is_a_real_setting(self) -> None:
        names = set(configmap_data())
        for keys in secret_keys().values():
            names |= {k for k in keys if k.startswith("WAYMARK_")}
        for w in workloads():
            names |= {e["name"] for e in container(w).get("env", [])}
        assert_real_settings(names, "deploy/k8s")

    def test_workloads_read_only_configmaps_and_secrets_that_exist(self) -> None:
        configmaps = set(by_name("ConfigMap"))
        secrets = secret_keys() | operator_secret_keys()
        assert not set(secret_keys()) & set(operator_secret_keys()), "an operator makes these"
        for w in workloads():
            c = container(w)
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for e in c.get("env", []):
                if "value" in e:
                    continue
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]], e["name"]
            for v in pod_spec(w).get("volumes", []):
                if "secret" in v:
                    assert v["secret"]["secretName"] in secrets

    def test_keys_are_mounted_where_the_settings_look(self) -> None:
        data = configmap_data()
        keys_secret = secret_keys()["waymark-keys"]
        path = Path(data["WAYMARK_PSEUDONYM_KEY_PATH"])
        assert path.parent.as_posix() == KEYS_DIR and path.name in keys_secret
        # nothing in the cluster mints tokens or pins the provider's key: the APIs read its JWKS
        for var in ("WAYMARK_JWT_PRIVATE_KEY_PATH", "WAYMARK_JWT_PUBLIC_KEY_PATH"):
            assert var not in data, var
        assert keys_secret == {path.name}
        for d in objects("Deployment"):
            mounts = {m["mountPath"]: m for m in container(d)["volumeMounts"]}
            assert mounts[KEYS_DIR]["readOnly"] is True, d["metadata"]["name"]

    def test_notification_settings_are_production_settings(self) -> None:
        data = configmap_data()
        s = settings_from(data)
        assert s.deployment_mode == "production"
        assert s.sms_api_base == "https://api.notifications.service.gov.uk"
        assert s.smtp_host and s.smtp_starttls is True and s.smtp_port in (587, 25)
        assert s.ics and s.quiet_hours_timezone == "Europe/London"
        # passwords and keys never in the ConfigMap
        assert not {"WAYMARK_SMTP_PASSWORD", "WAYMARK_SMTP_USERNAME"} & set(data)

    def test_the_dispatcher_mounts_its_credentials_where_the_settings_look(self) -> None:
        data = configmap_data()
        dispatcher = by_name("Deployment")[DISPATCHER]
        volumes = {v["name"]: v for v in pod_spec(dispatcher)["volumes"]}
        mounts = {m["mountPath"]: m for m in container(dispatcher)["volumeMounts"]}
        for var, secret in (("WAYMARK_SMS_API_KEY_PATH", "waymark-notify"),):
            path = Path(data[var])
            mount = mounts[path.parent.as_posix()]
            # a whole-Secret mount (no subPath): Kubernetes updates it when the Secret changes
            assert mount["readOnly"] is True and "subPath" not in mount, var
            assert volumes[mount["name"]]["secret"]["secretName"] == secret, var
            assert path.name in secret_keys()[secret], var
        env = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container(dispatcher)["env"]
            if "valueFrom" in e
        }
        assert env["WAYMARK_SMTP_USERNAME"] == {"name": "waymark-smtp", "key": "username"}
        assert env["WAYMARK_SMTP_PASSWORD"] == {"name": "waymark-smtp", "key": "password"}

    def test_only_the_dispatcher_holds_the_provider_credentials(self) -> None:
        assert NOTIFICATION_SECRETS <= set(secret_keys())
        for w in workloads():
            used = {
                v["secret"]["secretName"] for v in pod_spec(w).get("volumes", []) if "secret" in v
            }
            used |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container(w).get("env", [])
                if "valueFrom" in e
            }
            if w["metadata"]["name"] == DISPATCHER:
                assert NOTIFICATION_SECRETS <= used
            else:
                assert not used & NOTIFICATION_SECRETS, w["metadata"]["name"]

    def test_the_secret_template_holds_only_placeholders(self) -> None:
        for name, secret in by_name("Secret").items():
            assert "data" not in secret, f"{name}: use stringData placeholders, not data"
            for key, value in secret["stringData"].items():
                if key != "username":
                    assert "REPLACE-ME" in value, f"{name}.{key} is not a placeholder"

    def test_settings_point_at_the_cluster_resources(self) -> None:
        s = settings_from(configmap_data())
        pg = one("Cluster")
        kafka = one("Kafka")
        initdb = pg["spec"]["bootstrap"]["initdb"]
        assert s.pg_host == f"{pg['metadata']['name']}-rw" and s.pg_port == 5432
        assert s.db_name == initdb["database"]
        owner_secret = by_name("Secret")[initdb["secret"]["name"]]
        assert s.pg_user == initdb["owner"] == owner_secret["stringData"]["username"]
        assert not any(
            e["name"] == "WAYMARK_PG_PASSWORD"
            for w in workloads()
            for e in container(w).get("env", [])
        )
        [listener] = kafka["spec"]["kafka"]["listeners"]
        assert (
            s.bootstrap_servers == f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
        )
        # the Helm release `temporal` names its frontend Service temporal-frontend
        assert s.temporal_target == "temporal-frontend:7233"
        namespaces = temporal_values()["server"]["config"]["namespaces"]
        assert namespaces["create"] is True
        assert s.temporal_namespace in {n["name"] for n in namespaces["namespace"]}
        assert s.api_host == "0.0.0.0"


class TestDatabaseRoles:
    """CloudNativePG managed roles: one per part, each with its own Secret, mounted only by
    that part's pods; the migrate Job alone has the owner's."""

    def test_every_runtime_role_is_managed_and_no_superuser(self) -> None:
        pg = one("Cluster")
        managed = {r["name"]: r for r in pg["spec"]["managed"]["roles"]}
        s = settings_from(configmap_data())
        for part, role in s.pg_roles().items():
            if part == "owner":
                continue
            r = managed[role]
            assert r["ensure"] == "present" and r["login"] is True, role
            for attr in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
                assert r[attr] is False, (role, attr)
            secret = by_name("Secret")[r["passwordSecret"]["name"]]
            assert secret["type"] == "kubernetes.io/basic-auth"
            assert secret["stringData"]["username"] == role
        assert not any(r.get("superuser") for r in managed.values())
        sql = " ".join(pg["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"])
        assert "CREATE EXTENSION IF NOT EXISTS earthdistance SCHEMA directory" in sql

    def test_each_workload_mounts_only_its_own_roles_password(self) -> None:
        s = settings_from(configmap_data())
        assert configmap_data()["WAYMARK_PG_CREDENTIALS_DIR"] == "/var/run/secrets/waymark-db"
        managed = {
            r["name"]: r["passwordSecret"]["name"]
            for r in one("Cluster")["spec"]["managed"]["roles"]
        }
        managed[s.pg_user] = one("Cluster")["spec"]["bootstrap"]["initdb"]["secret"]["name"]
        db_secrets = set(managed.values())
        for w in workloads():
            name = w["metadata"]["name"]
            env = {e["name"]: e.get("value") for e in container(w).get("env", [])}
            used = {
                v["secret"]["secretName"]: v["secret"]
                for v in pod_spec(w).get("volumes", [])
                if "secret" in v and v["secret"]["secretName"] in db_secrets
            }
            if name == "journeys-bridge":  # Kafka and Temporal only
                assert "WAYMARK_DB_ROLE" not in env and not used
                continue
            part = env["WAYMARK_DB_ROLE"]
            assert part == (
                "owner"
                if name == "waymark-migrate"
                else next(p for p in s.pg_roles() if name.replace("-", "_").startswith(p))
            ), name
            role = s.pg_role(part)
            assert list(used) == [managed[role]], name
            [volume] = used.values()
            assert volume["items"] == [{"key": "password", "path": role}], name
            mount = next(
                m
                for m in container(w)["volumeMounts"]
                if m["mountPath"] == "/var/run/secrets/waymark-db"
            )
            assert mount["readOnly"] is True, name


class TestInfrastructure:
    def test_kafka_is_a_three_node_kraft_cluster(self) -> None:
        kafka, pool = one("Kafka"), one("KafkaNodePool")
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert pool["spec"]["replicas"] == 3
        assert set(pool["spec"]["roles"]) == {"broker", "controller"}
        assert "zookeeper" not in kafka["spec"]
        config = kafka["spec"]["kafka"]["config"]
        assert config["min.insync.replicas"] == 2
        assert config["default.replication.factor"] == 3
        assert config["offsets.topic.replication.factor"] == 3
        assert config["auto.create.topics.enable"] is False
        assert "topicOperator" in kafka["spec"]["entityOperator"]

    def test_kafka_topics_are_the_topics_the_code_creates(self) -> None:
        cluster = one("Kafka")["metadata"]["name"]
        declared = {}
        for t in objects("KafkaTopic"):
            assert t["metadata"]["labels"]["strimzi.io/cluster"] == cluster
            spec = t["spec"]
            assert spec["replicas"] == 3
            assert spec["config"]["min.insync.replicas"] == 2
            declared[spec["topicName"]] = (
                spec["partitions"],
                spec["config"]["retention.ms"],
                spec["config"]["cleanup.policy"],
            )
        wanted = {t.name: (t.partitions, t.retention_ms, t.cleanup_policy) for t in all_topics()}
        assert declared == wanted

    def test_every_topic_has_a_dead_letter_topic(self) -> None:
        names = {t["spec"]["topicName"] for t in objects("KafkaTopic")}
        events = {n for n in names if not n.endswith(".dlq")}
        assert events
        for name in events:
            assert f"{name}.dlq" in names, name
        assert {n.removesuffix(".dlq") for n in names - events} == events

    def test_postgres_is_a_three_instance_cluster_with_temporals_databases(self) -> None:
        pg = one("Cluster")
        assert pg["spec"]["instances"] == 3
        roles = {r["name"]: r for r in pg["spec"]["managed"]["roles"]}
        databases = {d["spec"]["name"]: d["spec"] for d in objects("Database")}
        stores = temporal_values()["server"]["config"]["persistence"]["datastores"]
        for store in stores.values():
            sql = store["sql"]
            assert sql["connectAddr"].split(".")[0].split(":")[0] == f"{pg['metadata']['name']}-rw"
            db = databases[sql["databaseName"]]
            assert db["cluster"]["name"] == pg["metadata"]["name"]
            assert db["owner"] == sql["user"] and sql["user"] in roles
            secret = roles[sql["user"]]["passwordSecret"]["name"]
            assert sql["existingSecret"] == secret
            assert by_name("Secret")[secret]["stringData"]["username"] == sql["user"]
            assert "password" not in sql, "Temporal's password belongs in the Secret"


class TestNetworkPolicy:
    def test_waymark_pods_are_denied_by_default(self) -> None:
        deny = by_name("NetworkPolicy")["waymark-default-deny"]
        assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "waymark"}
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]

    def test_every_waymark_pod_may_reach_dns_postgres_and_the_apis_only(self) -> None:
        # Kafka, Temporal and the identity provider have their own policies, for the pods that
        # use them (tests/test_deploy_security.py)
        s = settings_from(configmap_data())
        egress = by_name("NetworkPolicy")["waymark-egress"]["spec"]["egress"]
        ports = set()
        for rule in egress:
            for p in rule["ports"]:
                ports |= set(range(p["port"], p.get("endPort", p["port"]) + 1))
        api_ports = {s.api_port(service) for service in API_SERVICES}
        assert ports == {53, s.pg_port} | api_ports

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_each_api_accepts_traffic_on_its_port_only(self, service: str) -> None:
        # without this policy the default deny leaves the API unreachable
        policy = by_name("NetworkPolicy")[f"{api_part(service)}-ingress"]["spec"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == api_part(
            service
        )
        ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        assert ports == {container_api_port(service)}
        assert settings_from(configmap_data()).api_port(service) == container_api_port(service)

    def test_only_api_pods_accept_traffic(self) -> None:
        selected = set()
        for policy in objects("NetworkPolicy"):
            spec = policy["spec"]
            labels = spec["podSelector"].get("matchLabels", {})
            if spec.get("ingress") and labels.get("app.kubernetes.io/name") == "waymark":
                selected.add(labels.get("app.kubernetes.io/component"))
        assert selected == {api_part(s) for s in API_SERVICES} | {MLLP}

    def test_only_the_dispatcher_and_the_identity_provider_policy_leave_the_cluster(self) -> None:
        for policy in objects("NetworkPolicy"):
            name, spec = policy["metadata"]["name"], policy["spec"]
            outside = [
                rule
                for rule in spec.get("egress", [])
                if any("ipBlock" in peer for peer in rule.get("to", []))
            ]
            if not outside:
                continue
            if name == IDP_EGRESS:
                # the identity provider: https only (test_deploy_security.py checks which pods)
                assert [p for rule in outside for p in rule["ports"]] == [
                    {"protocol": "TCP", "port": 443}
                ]
                continue
            assert spec["podSelector"]["matchLabels"] == {
                "app.kubernetes.io/name": "waymark",
                "app.kubernetes.io/component": DISPATCHER,
            }, name

    def test_the_dispatcher_reaches_notify_partners_and_the_smtp_relay(self) -> None:
        s = settings_from(configmap_data())
        egress = by_name("NetworkPolicy")[f"{DISPATCHER}-egress"]["spec"]["egress"]
        by_port: dict[int, list[dict[str, Any]]] = {}
        for rule in egress:
            for p in rule["ports"]:
                assert "endPort" not in p
                by_port.setdefault(p["port"], []).extend(rule["to"])
        assert set(by_port) == {53, 443, 587, 25}
        assert s.smtp_port in by_port, "the SMTP port in config.yaml is not allowed out"
        # https (Notify, partner webhooks) only to public addresses: the SSRF guard's rule
        [peer] = by_port[443]
        block = peer["ipBlock"]
        assert block["cidr"] == "0.0.0.0/0"
        excepted = [ipaddress.ip_network(c) for c in block["except"]]
        for net in NON_PUBLIC_V4:
            assert any(ipaddress.ip_network(net).subnet_of(e) for e in excepted), net
        assert s.sms_base_url.startswith("https://") and s.sms_base_url.count(":") == 1
        assert s.deployment_mode == "production"


class TestMllpListener:
    """The HL7 v2 listener (services/integration/hl7) is deployed as the settings say it
    listens: its port, TLS from its own Secret in Kubernetes, published on loopback in Compose."""

    def test_compose_publishes_the_settings_port_on_loopback(self) -> None:
        env = {k: compose_value(v) for k, v in compose()["x-waymark-env"].items()}
        port = settings_from(env).integration_mllp_listen_port
        host = Settings(api_port_base=HOST_API_PORT_BASE).integration_mllp_listen_port
        assert services()[MLLP]["ports"] == [f"127.0.0.1:{host}:{port}"]
        assert services()[MLLP]["environment"]["WAYMARK_DB_ROLE"] == "integration"

    def test_kubernetes_listens_on_the_settings_port_with_tls_from_its_own_secret(self) -> None:
        s = settings_from(configmap_data())
        listener = by_name("Deployment")[MLLP]
        [port] = container(listener)["ports"]
        assert port["containerPort"] == s.integration_mllp_listen_port
        svc = by_name("Service")[MLLP]["spec"]
        assert svc["ports"][0]["targetPort"] == port["name"] and svc["ports"][0]["port"] == 2575
        policy = by_name("NetworkPolicy")[f"{MLLP}-ingress"]["spec"]
        assert {p["port"] for r in policy["ingress"] for p in r["ports"]} == {port["containerPort"]}
        # TLS: both files, from a mount of the listener's own Secret
        assert s.integration_mllp_tls_cert_path and s.integration_mllp_tls_key_path
        mounts = {m["mountPath"]: m for m in container(listener)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(listener)["volumes"]}
        for path in (s.integration_mllp_tls_cert_path, s.integration_mllp_tls_key_path):
            mount = mounts[path.parent.as_posix()]
            assert mount["readOnly"] is True and "subPath" not in mount
            assert volumes[mount["name"]]["secret"]["secretName"] == MLLP_TLS_SECRET
            assert path.name in secret_keys()[MLLP_TLS_SECRET]

    def test_only_the_listener_mounts_its_tls_key(self) -> None:
        for w in workloads():
            used = {
                v["secret"]["secretName"] for v in pod_spec(w).get("volumes", []) if "secret" in v
            }
            assert (MLLP_TLS_SECRET in used) == (w["metadata"]["name"] == MLLP), w["metadata"][
                "name"
            ]
