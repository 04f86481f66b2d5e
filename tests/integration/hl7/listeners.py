"""A listener process of its own for a test: `python -m services.integration.hl7` with settings
changed from the test instance's (another port and run directory, TLS, small limits)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from devtools.stack.health import heartbeat_file
from shared.heartbeat import read_heartbeat
from shared.settings import Settings, settings_env
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A port nobody listens on now (asked of the OS): fixed offsets from the instance's ports
    collided with the Temporal UI's on the default test instance."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def own_listener(
    base: Settings, name: str, directory: Path, **overrides: object
) -> AsyncIterator[Settings]:
    s = Settings(
        **{
            **base.model_dump(),
            # its own run directory (heartbeat) and port, beside the test instance's listener
            "instance": f"{base.instance}-{name}",
            "integration_mllp_port": free_port(),
            **overrides,
        }
    )
    s.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(directory / f"{name}.log", "ab")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.integration.hl7"],
        env=settings_env(s),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    beat = heartbeat_file(s, "integration-mllp")
    try:
        await eventually(
            lambda: (hb := read_heartbeat(beat)) is not None and hb.pid == proc.pid, timeout=90
        )
        yield s
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        beat.unlink(missing_ok=True)
