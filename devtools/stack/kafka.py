"""Apache Kafka for the local stack: the broker's jars from Maven Central (deploy/kafka/pom.xml),
one node in KRaft mode on loopback, run on Java 17."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import uuid
from pathlib import Path

from devtools.stack.kafka_acls import BROKER_USER, drop_acls, ensure_acls, ensure_passwords
from devtools.stack.process_control import (
    REPO_ROOT,
    StackError,
    read_pid,
    run,
    spawn,
    stop_pid,
    wait_until,
)
from devtools.stack.processes import Part
from shared.auth import write_private_file
from shared.kafka_principals import ADMIN
from shared.kafka_security import KafkaCredentialsMissing, client_options
from shared.settings import Settings

logger = logging.getLogger(__name__)

KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def _kafka_dir(s: Settings) -> Path:
    return s.home / "kafka"


def kafka_libs(s: Settings) -> Path:
    """Fetch the broker's jars from Maven Central once (re-fetched when the pom changes)."""
    libs = _kafka_dir(s) / "libs"
    if not KAFKA_POM.exists():
        raise StackError(f"{KAFKA_POM} not found: run waymark from a clone of the repository")
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    marker = libs / ".pom-sha256"
    if marker.exists() and marker.read_text() == digest:
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError(
            "Kafka needs Java 17 and Maven: sudo apt-get install -y openjdk-17-jre-headless maven"
        )
    if libs.exists():
        shutil.rmtree(libs)
    run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        what="fetching the Kafka broker with Maven",
    )
    marker.write_text(digest)
    return libs


def kafka_properties(s: Settings, broker_password: str) -> str:
    """The broker's configuration. Clients authenticate with SCRAM-SHA-512 on the one client
    listener and are authorised by the broker's own authorizer, which refuses whatever no ACL
    allows; the super users are waymark-admin and the broker itself (inter-broker SCRAM, and
    PLAIN on the loopback controller listener, where KRaft has no SCRAM)."""
    d = _kafka_dir(s)
    jaas = "org.apache.kafka.common.security"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
            f"listeners=SASL_PLAINTEXT://127.0.0.1:{s.kafka_port},"
            f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas}.scram."
            f'ScramLoginModule required username="{BROKER_USER}" password="{broker_password}";',
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={jaas}.plain.PlainLoginModule "
            f'required username="{BROKER_USER}" password="{broker_password}" '
            f'user_{BROKER_USER}="{broker_password}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{ADMIN};User:{BROKER_USER}",
            f"log.dirs={d / 'data'}",
            "num.partitions=3",
            # one node: internal topics cannot have more replicas than brokers
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "min.insync.replicas=1",
            # topics are created by `waymark up` from shared/topics.py, never by accident
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=300000",
            "",
        ]
    )


def _sasl_marker(s: Settings) -> Path:
    """Written when the data directory is formatted with the SCRAM users: a data directory
    without it was formatted for the plaintext broker of older clones, and is formatted anew."""
    return _kafka_dir(s) / "data-format-sasl"


def _formatted_for_sasl(s: Settings) -> bool:
    return (_kafka_dir(s) / "data" / "meta.properties").exists() and _sasl_marker(s).exists()


def _format(s: Settings, classpath: str, props: Path, passwords: dict[str, str]) -> None:
    d = _kafka_dir(s)
    shutil.rmtree(d / "data", ignore_errors=True)  # dev data of a plaintext broker, if any
    _sasl_marker(s).unlink(missing_ok=True)
    cluster_file = d / "cluster-id"
    if not cluster_file.exists():
        cluster_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    scram = []
    for user, password in passwords.items():
        scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
    run(
        ["java", "-cp", classpath, "kafka.tools.StorageTool", "format"]
        + ["-t", cluster_file.read_text().strip(), "-c", str(props), *scram],
        what="formatting Kafka storage",
    )
    # a new id at every format: ACLs applied to an earlier data directory are gone with it
    _sasl_marker(s).write_text(f"SCRAM-SHA-512 {uuid.uuid4()}\n")


def _kafka_pid_file(s: Settings) -> Path:
    return s.home / "run" / "kafka.pid"


def _kafka_log(s: Settings) -> Path:
    return s.logs_dir / "kafka.log"


async def kafka_probe(s: Settings) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    try:
        options = client_options(s)
    except KafkaCredentialsMissing:
        return False  # a fresh home: `up` makes the passwords before it starts the broker
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.describe_cluster(), 5)
        return True
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - closing a client that never connected
            pass


async def kafka_start(s: Settings) -> None:
    if await kafka_probe(s):
        return
    made = ensure_passwords(s.home)
    passwords = {user: password for user, (password, _) in made.items()}
    # a data directory of the plaintext broker of older clones, or one whose admin or broker
    # password is gone, is dev data: it is formatted anew with every SCRAM user
    reformat = not _formatted_for_sasl(s) or made[ADMIN][1] or made[BROKER_USER][1]
    if reformat:
        stop_pid(_kafka_pid_file(s), timeout=30)
    if read_pid(_kafka_pid_file(s)) is None:
        libs = kafka_libs(s)
        props = _kafka_dir(s) / "server.properties"
        props.unlink(missing_ok=True)  # an older clone's was world-readable; this holds a password
        write_private_file(props, kafka_properties(s, passwords[BROKER_USER]).encode())
        classpath = f"{libs}/*"
        if reformat:
            _format(s, classpath, props, passwords)
        spawn(
            [
                "java",
                f"-Xmx{s.kafka_heap}",
                f"-Xms{s.kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            log=_kafka_log(s),
            pid_file=_kafka_pid_file(s),
        )
    await wait_until(
        lambda: kafka_probe(s),
        what="Kafka",
        timeout=120,
        pid_file=_kafka_pid_file(s),
        log=_kafka_log(s),
    )


async def ensure_instance_acls(s: Settings) -> None:
    """This instance's ACLs (for its topic prefix) as shared/kafka_principals.py says."""
    format_id = _sasl_marker(s).read_text().strip()
    result = await asyncio.to_thread(ensure_acls, s, kafka_libs(s), format_id)
    logger.info("Kafka ACLs for prefix %r: %s", s.topic_prefix, result)


async def drop_instance_acls(s: Settings) -> None:
    await asyncio.to_thread(drop_acls, s, kafka_libs(s))


def part() -> Part:
    return Part(
        "kafka",
        "infra",
        kafka_start,
        kafka_probe,
        lambda s: stop_pid(_kafka_pid_file(s), timeout=30),
        port=lambda s: s.kafka_port,
        urls=lambda s: [f"kafka://{s.bootstrap_servers}"],
        log=_kafka_log,
        pid_file=_kafka_pid_file,
    )
