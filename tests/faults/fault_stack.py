"""A second, private Waymark stack for the fault-injection tests: its own PostgreSQL cluster,
Kafka broker and Temporal server (other ports, another home), started by the same code as
`waymark up`. The faults suite kills and restarts these processes freely; the test session's
own stack, which every other test uses, is never touched.

Also here: the fault injectors (kill -9 a part and start it again as a supervisor would,
restart PostgreSQL, SIGSTOP a consumer past its session timeout) and the record of what was
injected, for the run's printed summary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools import stack
from shared.settings import Settings

#: ports and names of the faults stack: clear of the dev stack (54329, 19092, 17233, 181xx),
#: the test session (182xx), helpers' instances (183xx-185xx) and the benches (187xx, 188xx)
FAULTS_OVERRIDES: dict[str, object] = {
    "instance": "faults",
    "db_name": "waymark_faults",
    "topic_prefix": "faults.",
    "temporal_namespace": "waymark-faults",
    "pg_port": 54339,
    "kafka_port": 29092,
    "kafka_controller_port": 29093,
    "temporal_port": 27233,
    "temporal_ui_port": 28233,
    "api_port_base": 18900,
}


def faults_settings(base: Settings) -> Settings:
    """The test session's settings (fast retries, test journey rules...) moved to a home,
    ports and names of their own."""
    values = base.model_dump()
    values.update(FAULTS_OVERRIDES)
    values["home"] = base.home / "faults-stack"
    # keys are made under the new home; never the test session's
    for key in ("pseudonym_key_path", "sms_api_key_path", "kafka_sasl_password_path"):
        values[key] = None
    return Settings(**values)


def _fresh_home(base: Settings, fs: Settings) -> None:
    """Stop whatever an interrupted run left, wipe the old data, reuse the broker's jars."""
    stack.down(fs, infra=True)
    for path in (
        stack.pg_dir(fs),
        fs.home / "kafka" / "data",
        fs.home / "temporal",
        fs.home / "run",
        fs.home / "sinks",
        fs.logs_dir,
    ):
        shutil.rmtree(path, ignore_errors=True)
    libs, mine = base.home / "kafka" / "libs", fs.home / "kafka" / "libs"
    if libs.exists() and not mine.exists():
        shutil.copytree(libs, mine)  # the same pom: kafka_libs() sees its marker and skips Maven


@pytest.fixture(scope="module")
async def fault_stack(settings: Settings) -> AsyncIterator[Settings]:
    """The whole faults stack, every process of it, as `waymark up` starts them."""
    fs = faults_settings(settings)
    _fresh_home(settings, fs)
    try:
        await stack.up(fs)
        yield fs
    finally:
        for extra in fs.run_dir.glob("*-extra.pid"):
            stack.stop_pid(extra, sig=signal.SIGKILL)
        stack.down(fs, infra=True)


# --- the faults --------------------------------------------------------------------------------


@dataclass
class Injected:
    name: str
    at: float
    detail: str = ""


@dataclass
class FaultLog:
    started: float = field(default_factory=time.monotonic)
    injected: list[Injected] = field(default_factory=list)

    def add(self, name: str, detail: str = "") -> None:
        self.injected.append(Injected(name, time.monotonic() - self.started, detail))
        print(f"  [{self.injected[-1].at:6.1f}s] fault: {name} {detail}".rstrip(), flush=True)


def _wait_dead(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while stack.pid_alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} still alive {timeout}s after SIGKILL")
        time.sleep(0.05)


def kill9(fs: Settings, name: str) -> int:
    """SIGKILL a part's whole process group: no clean-up, no flush, no goodbye."""
    part = stack.part_by_name(name)
    pid = stack.read_pid(part.pid_file(fs))
    if pid is None:
        raise AssertionError(f"{name} is not running, so it cannot be killed")
    os.killpg(pid, signal.SIGKILL)
    _wait_dead(pid)
    return pid


async def kill9_and_restart(
    fs: Settings, log: FaultLog, *names: str, down_for: float = 1.0
) -> None:
    """kill -9 the parts at once, leave them down a moment, start them as a supervisor would
    (Kubernetes, Compose `restart: always`), and wait until they are healthy."""
    for name in names:
        kill9(fs, name)
    log.add("kill -9", ", ".join(names))
    await asyncio.sleep(down_for)
    for name in names:
        await stack.part_by_name(name).start(fs)


async def restart_postgres(fs: Settings, log: FaultLog, *, down_for: float = 2.0) -> None:
    """Stop PostgreSQL in immediate mode (no checkpoint; crash recovery on start, like a power
    cut for the database) and start it again."""
    bindir = stack.pg_bin_dir()
    assert bindir is not None
    data = stack.pg_dir(fs) / "data"
    cmd = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd,
        check=True,
        capture_output=True,
    )
    log.add("PostgreSQL stopped (immediate)")
    await asyncio.sleep(down_for)
    await stack.pg_start(fs)
    log.add("PostgreSQL started (crash recovery)")


async def kill9_kafka(fs: Settings, log: FaultLog, *, down_for: float = 3.0) -> None:
    kill9(fs, "kafka")
    log.add("kill -9", "kafka broker")
    await asyncio.sleep(down_for)
    await stack.kafka_start(fs)
    log.add("kafka broker started")


def start_extra(fs: Settings, name: str) -> Path:
    """A second process of a part (e.g. another member of a consumer group)."""
    part = stack.part_by_name(name)
    pid_file = fs.run_dir / f"{name}-extra.pid"
    stack.spawn(
        part.command(fs),
        log=fs.logs_dir / f"{fs.instance}-{name}-extra.log",
        pid_file=pid_file,
        env=part.env(fs),  # as the part itself runs: its own Kafka principal
        cwd=stack.REPO_ROOT,
    )
    return pid_file


async def pause_past_session_timeout(
    fs: Settings, log: FaultLog, name: str, *, seconds: float
) -> None:
    """SIGSTOP a consumer (it neither heartbeats nor works) for longer than its group session
    timeout, so the group rebalances its partitions to the other member; then SIGCONT: it wakes
    holding a batch it no longer owns."""
    pid = stack.read_pid(stack.part_by_name(name).pid_file(fs))
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGSTOP)
    log.add("SIGSTOP", f"{name} for {seconds:.0f}s (session timeout 30s)")
    try:
        await asyncio.sleep(seconds)
    finally:
        os.killpg(pid, signal.SIGCONT)
        log.add("SIGCONT", name)
