"""One supervisor per instance at a time: `waymark up` and `waymark down` hold an exclusive
flock on `<run_dir>/stack.lock` while they work. Two runs at the same moment would otherwise
both find a part down and both start it, leaving one process running untracked. The lock goes
with the process that holds it (closed or killed), so a crashed run never leaves it stuck."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import IO

from devtools.stack.process_control import StackError
from shared.settings import Settings

logger = logging.getLogger(__name__)

#: how long `up` and `down` wait for another run of the same instance to finish, by default
WAIT_SECONDS = 600.0


class _InstanceLock:
    def __init__(self, s: Settings, what: str) -> None:
        s.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = s.run_dir / "stack.lock"
        self.instance, self.what = s.instance, what
        self.file: IO[str] = open(self.path, "a+")  # noqa: SIM115 - held until release()
        self.told = False

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.told:
                logger.warning("%s; waiting for it to finish", self._holder())
                self.told = True
            return False
        self.file.seek(0)
        self.file.truncate()
        argv = " ".join(sys.argv[1:]) or self.what
        self.file.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}: {argv}\n")
        self.file.flush()
        return True

    def _holder(self) -> str:
        try:
            holder = self.path.read_text().strip()
        except OSError:
            holder = ""
        return (
            f"another `waymark up` or `down` of instance {self.instance!r} is running "
            f"({holder or 'holder unknown'}; lock {self.path})"
        )

    def refuse(self, wait: float) -> StackError:
        self.release()
        return StackError(
            f"{self._holder()} and did not finish within {wait:.0f}s: wait for it, or stop it"
        )

    def release(self) -> None:
        self.file.close()  # closing the file releases the flock


@contextmanager
def instance_lock(s: Settings, *, what: str, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the instance's lock; wait up to `wait` seconds for another holder, then refuse."""
    lock = _InstanceLock(s, what)
    deadline = time.monotonic() + wait
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise lock.refuse(wait)
        time.sleep(0.2)
    try:
        yield
    finally:
        lock.release()


@asynccontextmanager
async def instance_lock_async(
    s: Settings, *, what: str, wait: float = WAIT_SECONDS
) -> AsyncIterator[None]:
    """`instance_lock` for a coroutine: waiting does not block the event loop."""
    lock = _InstanceLock(s, what)
    deadline = time.monotonic() + wait
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise lock.refuse(wait)
        await asyncio.sleep(0.2)
    try:
        yield
    finally:
        lock.release()
