"""The heartbeat file a long-running process writes (`<run_dir>/<part>.alive`): when it last
beat, and which process beat.

A heartbeat vouches only for the process that wrote it. A process killed with SIGKILL leaves
its last heartbeat behind, still fresh for a while; the local supervisor (devtools/stack)
checks the pid in the file against the pid it started, so the dead process's heartbeat never
makes the process that replaced it look healthy. The Compose and Kubernetes probes read the
time only (the first field)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heartbeat:
    at: float  # seconds since the epoch
    pid: int | None  # None in a file written before heartbeats named their process


def write_heartbeat(path: Path) -> None:
    """`<time> <pid>`, replaced in one step so that a reader never sees half a file."""
    pid = os.getpid()
    partial = path.with_name(f".{path.name}.{pid}")
    partial.write_text(f"{time.time()} {pid}\n")
    os.replace(partial, path)


def read_heartbeat(path: Path) -> Heartbeat | None:
    """The last heartbeat in `path`; None when there is none (or it cannot be read)."""
    try:
        fields = path.read_text().split()
        return Heartbeat(float(fields[0]), int(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None
