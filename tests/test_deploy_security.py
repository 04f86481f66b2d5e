"""The production deployment's identities (issue #18), checked in the files like the rest of
tests/test_deploy_files.py: Kafka users and ACLs (Strimzi), the Kafka clients' credentials,
Temporal's mutual TLS and authorizer (Helm values) and who may reach its frontend, and the
OpenID Connect settings and OAuth clients. No cluster or Docker engine is needed.

The least-privilege table below is the one issue #18's helpers agreed (written out here as
data, independently of devtools/kafka_acls.py which generates the KafkaUsers); it will be read
from shared.kafka_principals once that module is merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import kafka_acls
from tests.test_deploy_files import (
    API_SERVICES,
    DISPATCHER,
    IDP_EGRESS,
    api_part,
    by_name,
    configmap_data,
    container,
    k8s_files,
    objects,
    one,
    operator_secret_keys,
    pod_spec,
    secret_keys,
    settings_from,
    temporal_values,
    workloads,
)

T = "waymark.{}.v1".format
#: principal -> (topics it writes, topics it reads, its consumer group)
LEAST_PRIVILEGE: dict[str, tuple[set[str], set[str], set[str]]] = {
    "referrals": (
        {T("referrals"), T("directory") + ".dlq"},
        {T("directory")},
        {"referrals-directory"},
    ),
    "directory": ({T("directory")}, set(), set()),
    "care-plans": (
        {T("care-plans"), T("referrals") + ".dlq"},
        {T("referrals")},
        {"care-plans-referrals"},
    ),
    "notifications": (
        {T("notifications")}
        | {
            T(t) + ".dlq"
            for t in ("referrals", "directory", "care-plans", "journeys", "encounters")
        },
        {T(t) for t in ("referrals", "directory", "care-plans", "journeys", "encounters")},
        {"notifications"},
    ),
    "integration": ({T("encounters")}, set(), set()),
    "journeys": (
        {T("journeys")}
        | {T(t) + ".dlq" for t in ("referrals", "care-plans", "notifications", "encounters")},
        {T(t) for t in ("referrals", "care-plans", "notifications", "encounters")},
        {"journeys-bridge"},
    ),
}
ADMIN = "waymark-admin"
#: the Deployments that are Kafka clients, and the principal each runs as
KAFKA_CLIENTS = {
    "referrals-relay": "referrals",
    "referrals-consumer": "referrals",
    "directory-relay": "directory",
    "care-plans-relay": "care-plans",
    "care-plans-consumer": "care-plans",
    "notifications-relay": "notifications",
    "notifications-consumer": "notifications",
    "integration-relay": "integration",
    "journeys-relay": "journeys",
    "journeys-bridge": "journeys",
}
#: the Deployments that talk to Temporal, and whose client certificate each presents
TEMPORAL_CLIENTS = {
    "journeys-worker": "journeys",
    "journeys-bridge": "journeys",
    "notifications-api": "notifications",
}
#: the Deployments that call another service's API with their own OAuth client
OAUTH_CLIENTS = {
    "referrals-api": "referrals",
    "integration-api": "integration",
    DISPATCHER: "notifications",
    "journeys-bridge": "journeys",
}
KAFKA_ENV = (
    "WAYMARK_KAFKA_SECURITY_PROTOCOL",
    "WAYMARK_KAFKA_SASL_MECHANISM",
    "WAYMARK_KAFKA_SASL_USERNAME",
    "WAYMARK_KAFKA_SASL_PASSWORD_PATH",
    "WAYMARK_KAFKA_SSL_CA_PATH",
)
TEMPORAL_ENV = (
    "WAYMARK_TEMPORAL_TLS_CERT_PATH",
    "WAYMARK_TEMPORAL_TLS_KEY_PATH",
    "WAYMARK_TEMPORAL_TLS_CA_PATH",
    "WAYMARK_TEMPORAL_TLS_SERVER_NAME",
    "WAYMARK_TEMPORAL_CODEC_KEYS_PATH",
)
TEMPORAL_WEB = {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/component": "web"}


def deployments() -> dict[str, dict[str, Any]]:
    return by_name("Deployment")


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def mounted_file(workload: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """The Secret a file path in the container comes from, and that Secret volume: the file's
    directory must be a read-only whole-volume mount (no subPath, so updates arrive)."""
    p = Path(path)
    mounts = {m["mountPath"]: m for m in container(workload)["volumeMounts"]}
    mount = mounts.get(p.parent.as_posix())
    name = workload["metadata"]["name"]
    assert mount is not None, f"{name}: nothing is mounted at {p.parent}"
    assert mount["readOnly"] is True and "subPath" not in mount, (name, path)
    volume = {v["name"]: v for v in pod_spec(workload)["volumes"]}[mount["name"]]["secret"]
    files = {i["path"]: i["key"] for i in volume.get("items", [])}
    key = files.get(p.name, p.name) if files else p.name
    if files:
        assert p.name in files, f"{name}: the volume does not project {p.name}"
    known = (secret_keys() | operator_secret_keys())[volume["secretName"]]
    assert key in known, f"{name}: Secret {volume['secretName']} has no key {key}"
    return volume["secretName"], volume


def secret_volumes(workload: dict[str, Any]) -> set[str]:
    return {
        v["secret"]["secretName"] for v in pod_spec(workload).get("volumes", []) if "secret" in v
    }


def components(selector: dict[str, Any]) -> set[str]:
    """The Waymark components a pod selector picks: exact labels, or `In` expressions."""
    labels = selector.get("matchLabels", {})
    exprs = {e["key"]: e for e in selector.get("matchExpressions", [])}
    name = labels.get("app.kubernetes.io/name")
    if name is None:
        expr = exprs["app.kubernetes.io/name"]
        assert expr["operator"] == "In"
        [name] = expr["values"]
    assert name == "waymark", selector
    if "app.kubernetes.io/component" in labels:
        return {labels["app.kubernetes.io/component"]}
    expr = exprs["app.kubernetes.io/component"]
    assert expr["operator"] == "In", selector
    return set(expr["values"])


def policy(name: str) -> dict[str, Any]:
    return by_name("NetworkPolicy")[name]["spec"]


def kafka_users() -> dict[str, dict[str, Any]]:
    return by_name("KafkaUser")


# ---- Kafka: users and ACLs ---------------------------------------------------------------------


class TestKafkaUsers:
    def test_the_committed_files_are_what_the_generator_makes(self) -> None:
        for path, text in kafka_acls.generated().items():
            assert path.read_text() == text, f"{path.name} is stale: python -m devtools.kafka_acls"
        assert kafka_acls.main(["--check"]) == 0

    def test_one_user_per_process_kind_and_the_admin(self) -> None:
        assert set(kafka_users()) == set(LEAST_PRIVILEGE) | {ADMIN}
        cluster = one("Kafka")["metadata"]["name"]
        for name, user in kafka_users().items():
            assert user["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name
            assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name

    @pytest.mark.parametrize("principal", sorted(LEAST_PRIVILEGE))
    def test_each_users_acls_are_exactly_the_least_privilege_table(self, principal: str) -> None:
        writes, reads, groups = LEAST_PRIVILEGE[principal]
        authz = kafka_users()[principal]["spec"]["authorization"]
        assert authz["type"] == "simple"
        got: dict[tuple[str, str], set[str]] = {}
        for acl in authz["acls"]:
            res = acl["resource"]
            assert res["patternType"] == "literal", (principal, res)  # never a prefix or "*"
            assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
            key = (res["type"], res["name"])
            assert key not in got, f"{principal}: two rules for {key}"
            got[key] = set(acl["operations"])
        wanted = {("topic", t): {"Describe", "Write"} for t in writes}
        wanted |= {("topic", t): {"Describe", "Read"} for t in reads}
        wanted |= {("group", g): {"Read"} for g in groups}
        assert got == wanted

    def test_topics_in_the_acls_exist(self) -> None:
        topics = {t["spec"]["topicName"] for t in objects("KafkaTopic")}
        for name, user in kafka_users().items():
            for acl in user["spec"].get("authorization", {}).get("acls", []):
                if acl["resource"]["type"] == "topic":
                    assert acl["resource"]["name"] in topics, (name, acl["resource"]["name"])

    def test_the_groups_are_the_consumers_own(self) -> None:
        # the group a consumer joins is its name (shared.consumer); a renamed consumer without
        # its ACL would be refused by the brokers
        from services.care_plans.consumers import CONSUMER_NAME as CARE_PLANS
        from services.notifications.consumers import CONSUMER_NAME as NOTIFICATIONS
        from services.notifications.consumers import TOPICS as NOTIFICATION_TOPICS
        from services.referrals.consumers import CONSUMER_NAME as REFERRALS
        from workflows.journeys.bridge import CONSUMER_NAME as BRIDGE

        assert LEAST_PRIVILEGE["referrals"][2] == {REFERRALS}
        assert LEAST_PRIVILEGE["care-plans"][2] == {CARE_PLANS}
        assert LEAST_PRIVILEGE["notifications"][2] == {NOTIFICATIONS}
        assert LEAST_PRIVILEGE["journeys"][2] == {BRIDGE}
        assert LEAST_PRIVILEGE["notifications"][1] == set(NOTIFICATION_TOPICS)

    def test_the_admin_is_the_only_super_user(self) -> None:
        authz = one("Kafka")["spec"]["kafka"]["authorization"]
        assert authz == {"type": "simple", "superUsers": [ADMIN]}
        assert "authorization" not in kafka_users()[ADMIN]["spec"]
        assert "userOperator" in one("Kafka")["spec"]["entityOperator"]

    def test_no_plaintext_or_unauthenticated_listener(self) -> None:
        listeners = one("Kafka")["spec"]["kafka"]["listeners"]
        assert listeners
        for listener in listeners:
            assert listener["tls"] is True, listener["name"]
            assert listener["authentication"]["type"] == "scram-sha-512", listener["name"]


# ---- Kafka: the clients ------------------------------------------------------------------------


class TestKafkaClients:
    def test_the_kafka_clients_are_the_relays_consumers_and_bridge(self) -> None:
        using = {n for n, d in deployments().items() if "WAYMARK_KAFKA_SASL_USERNAME" in env_of(d)}
        assert using == set(KAFKA_CLIENTS)
        assert {n for n in deployments() if n.endswith(("-relay", "-consumer"))} <= using
        assert set(KAFKA_CLIENTS.values()) == set(LEAST_PRIVILEGE)

    @pytest.mark.parametrize("name", sorted(KAFKA_CLIENTS))
    def test_each_client_has_its_own_principals_secret_and_no_other(self, name: str) -> None:
        d = deployments()[name]
        env = env_of(d)
        principal = KAFKA_CLIENTS[name]
        assert env["WAYMARK_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["WAYMARK_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["WAYMARK_KAFKA_SASL_USERNAME"]["value"] == principal
        secret, volume = mounted_file(d, env["WAYMARK_KAFKA_SASL_PASSWORD_PATH"]["value"])
        assert secret == principal  # Strimzi's Secret is named after the user
        assert volume["items"] == [{"key": "password", "path": "password"}]
        ca, _ = mounted_file(d, env["WAYMARK_KAFKA_SSL_CA_PATH"]["value"])
        assert ca == f"{one('Kafka')['metadata']['name']}-cluster-ca-cert"
        assert secret_volumes(d) & set(kafka_users()) == {principal}

    def test_no_other_pod_has_kafka_credentials(self) -> None:
        for w in workloads():
            name = w["metadata"]["name"]
            if name in KAFKA_CLIENTS:
                continue
            assert not set(KAFKA_ENV) & set(env_of(w)), name
            assert not secret_volumes(w) & set(kafka_users()), name
        # the part with internet egress in particular
        assert DISPATCHER not in KAFKA_CLIENTS
        # and nothing in the ConfigMap hands every pod a principal
        assert not set(KAFKA_ENV) & set(configmap_data())

    def test_only_the_kafka_clients_reach_the_listener(self) -> None:
        [listener] = one("Kafka")["spec"]["kafka"]["listeners"]
        peers = listener["networkPolicyPeers"]
        assert components(peers[0]["podSelector"]) == set(KAFKA_CLIENTS)
        # the second peer: an operator's tool pod running as waymark-admin
        assert peers[1:] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "waymark-admin"}}}
        ]
        spec = policy("waymark-kafka-egress")
        assert components(spec["podSelector"]) == set(KAFKA_CLIENTS)
        [rule] = spec["egress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": listener["port"]}]
        assert rule["to"][0]["podSelector"]["matchLabels"]["strimzi.io/kind"] == "Kafka"
        port = int(settings_from(configmap_data()).bootstrap_servers.rsplit(":", 1)[1])
        assert port == listener["port"]

    def test_no_other_policy_opens_the_kafka_port(self) -> None:
        port = one("Kafka")["spec"]["kafka"]["listeners"][0]["port"]
        for p in objects("NetworkPolicy"):
            if p["metadata"]["name"] == "waymark-kafka-egress":
                continue
            for rule in p["spec"].get("egress", []):
                for rp in rule.get("ports", []):
                    assert not rp["port"] <= port <= rp.get("endPort", rp["port"]), p["metadata"]


# ---- Temporal ----------------------------------------------------------------------------------


def certificates() -> dict[str, dict[str, Any]]:
    return {
        o["spec"]["secretName"]: o
        for o in temporal_values()["extraObjects"]
        if o["kind"] == "Certificate"
    }


class TestTemporal:
    def test_mutual_tls_on_the_frontend_and_between_nodes(self) -> None:
        tls = temporal_values()["server"]["tls"]
        assert tls["internode"]["enabled"] is True and tls["internode"]["requireClientAuth"]
        assert tls["frontend"]["enabled"] is True and tls["frontend"]["requireClientAuth"]
        certs = certificates()
        frontend = certs[tls["frontend"]["secretName"]]["spec"]
        internode = certs[tls["internode"]["secretName"]]["spec"]
        assert tls["frontend"]["serverName"] in frontend["dnsNames"]
        assert tls["internode"]["serverName"] in internode["dnsNames"]
        # two CAs: a Waymark client certificate is never a Temporal node's
        assert frontend["issuerRef"]["name"] != internode["issuerRef"]["name"]
        web = temporal_values()["web"]["tls"]
        assert web["enabled"] is True and web["serverName"] == tls["frontend"]["serverName"]
        assert certs[web["secretName"]]["spec"]["issuerRef"] == frontend["issuerRef"]

    def test_the_frontend_has_the_default_jwt_authorizer(self) -> None:
        authz = temporal_values()["server"]["config"]["authorization"]
        assert authz["authorizer"] == "default" and authz["claimMapper"] == "default"
        assert authz["permissionsClaimName"] == "permissions"
        [uri] = authz["jwtKeyProvider"]["keySourceURIs"]
        assert "jwks" in uri.lower() and authz["jwtKeyProvider"]["refreshInterval"]
        # the internal-frontend serves Temporal's own workers without the authorizer
        assert temporal_values()["server"]["internal-frontend"]["enabled"] is True
        ui = {e["name"]: e for e in temporal_values()["web"]["additionalEnv"]}
        assert ui["TEMPORAL_AUTH_ENABLED"]["value"] == "true"

    def test_the_temporal_clients_are_the_worker_bridge_and_notifications_api(self) -> None:
        using = {
            n for n, d in deployments().items() if "WAYMARK_TEMPORAL_TLS_CERT_PATH" in env_of(d)
        }
        assert using == set(TEMPORAL_CLIENTS)
        for w in workloads():
            if w["metadata"]["name"] not in TEMPORAL_CLIENTS:
                assert not set(TEMPORAL_ENV) & set(env_of(w)), w["metadata"]["name"]

    @pytest.mark.parametrize("name", sorted(TEMPORAL_CLIENTS))
    def test_each_client_mounts_its_certificate_and_the_keyring(self, name: str) -> None:
        d = deployments()[name]
        env = {k: e["value"] for k, e in env_of(d).items() if k in TEMPORAL_ENV}
        assert set(env) == set(TEMPORAL_ENV)
        tls = temporal_values()["server"]["tls"]["frontend"]
        assert env["WAYMARK_TEMPORAL_TLS_SERVER_NAME"] == tls["serverName"]
        wanted = f"waymark-temporal-{TEMPORAL_CLIENTS[name]}-tls"
        cert = certificates()[wanted]["spec"]
        assert "client auth" in cert["usages"]
        assert cert["issuerRef"] == certificates()[tls["secretName"]]["spec"]["issuerRef"]
        for var, file in (
            ("WAYMARK_TEMPORAL_TLS_CERT_PATH", "tls.crt"),
            ("WAYMARK_TEMPORAL_TLS_KEY_PATH", "tls.key"),
            ("WAYMARK_TEMPORAL_TLS_CA_PATH", "ca.crt"),
        ):
            assert Path(env[var]).name == file
            assert mounted_file(d, env[var])[0] == wanted, var
        assert (
            mounted_file(d, env["WAYMARK_TEMPORAL_CODEC_KEYS_PATH"])[0] == "waymark-temporal-codec"
        )
        others = {s for s in certificates() if s != wanted}
        assert not secret_volumes(d) & others, name

    def test_the_frontend_admits_exactly_its_clients_and_the_ui(self) -> None:
        spec = policy("temporal-frontend-ingress")
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "frontend"
        by_port: dict[int, list[dict[str, Any]]] = {}
        for rule in spec["ingress"]:
            for p in rule["ports"]:
                by_port.setdefault(p["port"], []).extend(rule["from"])
        assert set(by_port) == {7233, 6933}
        waymark = [p for p in by_port[7233] if "matchExpressions" in p["podSelector"]]
        rest = [p for p in by_port[7233] if p not in waymark]
        assert len(waymark) == 1 and components(waymark[0]["podSelector"]) == set(TEMPORAL_CLIENTS)
        assert rest == [{"podSelector": {"matchLabels": TEMPORAL_WEB}}]
        assert all("namespaceSelector" not in p and "ipBlock" not in p for p in by_port[7233])
        # membership gossip: Temporal's own services only
        [members] = by_port[6933]
        names = {e["key"]: e["values"] for e in members["podSelector"]["matchExpressions"]}
        assert names["app.kubernetes.io/name"] == ["temporal"]
        assert "web" not in names["app.kubernetes.io/component"]
        # the same pods are allowed out to it, on the port they dial
        egress = policy("waymark-temporal-egress")
        assert components(egress["podSelector"]) == set(TEMPORAL_CLIENTS)
        port = int(settings_from(configmap_data()).temporal_target.rsplit(":", 1)[1])
        assert [p["port"] for r in egress["egress"] for p in r["ports"]] == [port] == [7233]

    def test_the_internal_frontend_is_for_temporal_only(self) -> None:
        spec = policy("temporal-internal-frontend-ingress")
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
            "internal-frontend"
        )
        for rule in spec["ingress"]:
            for peer in rule["from"]:
                exprs = {e["key"]: e for e in peer["podSelector"]["matchExpressions"]}
                assert exprs["app.kubernetes.io/name"]["values"] == ["temporal"]
                assert exprs["app.kubernetes.io/component"] == {
                    "key": "app.kubernetes.io/component",
                    "operator": "NotIn",
                    "values": ["web"],
                }


# ---- OpenID Connect and the OAuth clients ------------------------------------------------------


class TestIdentity:
    def test_the_apis_trust_the_ics_issuer_not_a_pinned_key(self) -> None:
        data = configmap_data()
        assert data["WAYMARK_OIDC_ISSUER"].startswith("https://REPLACE-ME.")
        assert data["WAYMARK_OIDC_CLAIM_MAPPING"] == "cis2"
        assert data["WAYMARK_JWT_AUDIENCE"]
        for gone in (
            "WAYMARK_JWT_ISSUER",
            "WAYMARK_JWT_PUBLIC_KEY_PATH",
            "WAYMARK_SERVICE_TOKEN_PATH",
        ):
            assert gone not in data, gone

    def test_no_shared_service_token_anywhere(self) -> None:
        for name in k8s_files():
            text = (Path(__file__).resolve().parent.parent / "deploy" / "k8s" / name).read_text()
            assert "service-token" not in text and "SERVICE_TOKEN" not in text, name
        assert "waymark-service-token" not in secret_keys()

    def test_the_oauth_clients_are_the_processes_that_call_other_apis(self) -> None:
        using = {n for n, d in deployments().items() if "WAYMARK_OAUTH_CLIENT_ID" in env_of(d)}
        assert using == set(OAUTH_CLIENTS)

    @pytest.mark.parametrize("name", sorted(OAUTH_CLIENTS))
    def test_each_uses_its_own_kinds_client_only(self, name: str) -> None:
        d = deployments()[name]
        env = env_of(d)
        own = f"waymark-oauth-{OAUTH_CLIENTS[name]}"
        ref = env["WAYMARK_OAUTH_CLIENT_ID"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": own, "key": "client-id"}
        secret, _ = mounted_file(d, env["WAYMARK_OAUTH_CLIENT_SECRET_PATH"]["value"])
        assert secret == own
        oauth = {s for s in secret_keys() if s.startswith("waymark-oauth-")}
        assert secret_volumes(d) & oauth == {own} | (
            {"waymark-oauth-dashboard"} if name == "notifications-api" else set()
        )

    def test_only_the_notifications_api_is_the_dashboards_relying_party(self) -> None:
        for name, d in deployments().items():
            env = env_of(d)
            if name != "notifications-api":
                assert "WAYMARK_DASHBOARD_CLIENT_ID" not in env, name
                assert "waymark-oauth-dashboard" not in secret_volumes(d), name
                continue
            ref = env["WAYMARK_DASHBOARD_CLIENT_ID"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "waymark-oauth-dashboard", "key": "client-id"}
            path = env["WAYMARK_DASHBOARD_CLIENT_SECRET_PATH"]["value"]
            assert mounted_file(d, path)[0] == "waymark-oauth-dashboard"

    def test_the_apis_and_oauth_clients_may_reach_the_identity_provider(self) -> None:
        spec = policy(IDP_EGRESS)
        assert components(spec["podSelector"]) == {api_part(s) for s in API_SERVICES} | set(
            OAUTH_CLIENTS
        )
        [rule] = spec["egress"]
        [peer] = rule["to"]
        assert "10.0.0.0/8" in peer["ipBlock"]["except"]
        assert "169.254.0.0/16" in peer["ipBlock"]["except"]

    def test_every_secret_a_pod_uses_is_documented_or_made_by_an_operator(self) -> None:
        template, made = set(secret_keys()), set(operator_secret_keys())
        used: set[str] = set()
        for w in workloads():
            used |= secret_volumes(w)
            used |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container(w).get("env", [])
                if "valueFrom" in e
            }
        assert used <= template | made
        # and every template Secret is used: by a pod, PostgreSQL or the Temporal chart
        elsewhere = {
            r["passwordSecret"]["name"] for r in one("Cluster")["spec"]["managed"]["roles"]
        } | {one("Cluster")["spec"]["bootstrap"]["initdb"]["secret"]["name"]}
        ui = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in temporal_values()["web"]["additionalEnv"]
            if "valueFrom" in e
        }
        assert template - used - elsewhere - ui == set()


# ---- Compose: the same principals on the single broker -----------------------------------------


class TestComposeKafka:
    @staticmethod
    def _services() -> dict[str, dict[str, Any]]:
        from tests.test_deploy_files import services

        return services()

    def test_the_broker_has_no_plaintext_client_listener_and_its_own_authorizer(self) -> None:
        env = {k: str(v) for k, v in self._services()["kafka"]["environment"].items()}
        protocols = dict(
            kv.split(":") for kv in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        for listener in env["KAFKA_LISTENERS"].split(","):
            name, _, address = listener.partition("://")
            if protocols[name] == "PLAINTEXT":
                # only the KRaft controller, on the container's own loopback
                assert name == env["KAFKA_CONTROLLER_LISTENER_NAMES"]
                assert address.startswith("127.0.0.1:"), listener
        assert env["KAFKA_ADVERTISED_LISTENERS"].startswith("SASL_PLAINTEXT://")
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert set(env["KAFKA_SUPER_USERS"].split(";")) == {f"User:{ADMIN}", "User:ANONYMOUS"}
        # the admin's password reaches the broker from its secret file, never the YAML
        assert self._services()["kafka"]["secrets"] == ["kafka_waymark_admin"]
        start = (
            Path(__file__).resolve().parent.parent / "deploy/compose/kafka-start.sh"
        ).read_text()
        assert "--add-scram" in start and "/run/secrets/kafka_waymark_admin" in start

    def test_every_principal_has_a_secret_and_the_users_job_has_them_all(self) -> None:
        from tests.test_deploy_files import compose

        declared = {n for n in compose()["secrets"] if n.startswith("kafka_")}
        assert declared == set(kafka_acls.compose_secret_names())
        job = self._services()["kafka-users"]
        assert set(job["secrets"]) == declared
        assert "./deploy/compose/kafka-users.sh:/etc/waymark/kafka-users.sh:ro" in job["volumes"]
        assert job["restart"] == "no"

    def test_each_compose_kafka_client_is_its_own_principal(self) -> None:
        clients = {
            name: svc["environment"]
            for name, svc in self._services().items()
            if "WAYMARK_KAFKA_SASL_USERNAME" in svc.get("environment", {})
        }
        # the same processes as Kubernetes, and `waymark topics` as the admin
        assert set(clients) == set(KAFKA_CLIENTS) | {"topics"}
        for name, env in clients.items():
            principal = ADMIN if name == "topics" else KAFKA_CLIENTS[name]
            secret = f"kafka_{principal.replace('-', '_')}"
            assert env["WAYMARK_KAFKA_SASL_USERNAME"] == principal, name
            assert env["WAYMARK_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
            assert env["WAYMARK_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
            assert env["WAYMARK_KAFKA_SASL_PASSWORD_PATH"] == f"/run/secrets/{secret}", name
            kafka_secrets = [s for s in self._services()[name]["secrets"] if s.startswith("kafka_")]
            assert kafka_secrets == [secret], name
        for name, svc in self._services().items():
            if name not in clients and name != "kafka-users" and name != "kafka":
                assert not [s for s in svc.get("secrets", []) if s.startswith("kafka_")], name
