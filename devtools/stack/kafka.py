"""Apache Kafka for the local stack: the broker's jars from Maven Central (deploy/kafka/pom.xml),
one node in KRaft mode on loopback, run on Java 17."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import uuid
from pathlib import Path

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
from shared.settings import Settings

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


def kafka_properties(s: Settings) -> str:
    d = _kafka_dir(s)
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
            f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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


def _kafka_pid_file(s: Settings) -> Path:
    return s.home / "run" / "kafka.pid"


def _kafka_log(s: Settings) -> Path:
    return s.logs_dir / "kafka.log"


async def kafka_probe(s: Settings) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, request_timeout_ms=3000)
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
    if read_pid(_kafka_pid_file(s)) is None:
        libs = kafka_libs(s)
        d = _kafka_dir(s)
        props = d / "server.properties"
        props.write_text(kafka_properties(s))
        cluster_file = d / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            )
        classpath = f"{libs}/*"
        if not (d / "data" / "meta.properties").exists():
            run(
                [
                    "java",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_file.read_text().strip(),
                    "-c",
                    str(props),
                ],
                what="formatting Kafka storage",
            )
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
