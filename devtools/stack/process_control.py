"""Starting, watching and stopping local processes: pid files, process groups, readiness
waits. Every part of the local stack (devtools/stack) is started and stopped through these."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """Something a person has to fix; the message says what."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def spawn(
    argv: list[str],
    *,
    log: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(
            f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid_file: Path, *, sig: int = signal.SIGTERM, timeout: float = 20) -> bool:
    """Stop the process group recorded in pid_file; True if something was stopped."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        logger.warning("pid %d did not stop in %.0fs; killing", pid, timeout)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)
    return True


async def wait_until(
    probe: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout: float,
    pid_file: Path | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await probe():
            return
        if pid_file is not None and read_pid(pid_file) is None:
            raise StackError(f"{what} exited while starting; see {log}:\n{tail(log, 30)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f}s; see {log}:\n{tail(log, 30)}")
        await asyncio.sleep(0.25)


def tail(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


def run(argv: list[str], *, what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise StackError(f"{what} failed ({' '.join(argv)}):\n{res.stdout}\n{res.stderr}")
    return res
