"""The heartbeat file: the time and the pid of the process that wrote it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shared.heartbeat import read_heartbeat, write_heartbeat

ROOT = Path(__file__).resolve().parents[2]


class TestHeartbeatFile:
    def test_names_the_process_that_wrote_it_and_when(self, tmp_path: Path) -> None:
        path = tmp_path / "part.alive"
        before = time.time()
        write_heartbeat(path)
        beat = read_heartbeat(path)
        assert beat is not None and beat.pid == os.getpid()
        assert before <= beat.at <= time.time()
        assert [p.name for p in tmp_path.iterdir()] == ["part.alive"]  # nothing half-written

    def test_another_process_beating_the_same_file_takes_it_over(self, tmp_path: Path) -> None:
        path = tmp_path / "part.alive"
        write_heartbeat(path)
        code = "import sys; from pathlib import Path; from shared.heartbeat import write_heartbeat"
        other = subprocess.Popen(
            [sys.executable, "-c", f"{code}; write_heartbeat(Path(sys.argv[1]))", str(path)],
            cwd=ROOT,
        )
        assert other.wait(timeout=60) == 0
        beat = read_heartbeat(path)
        assert beat is not None and beat.pid == other.pid != os.getpid()

    def test_a_file_without_a_pid_vouches_for_no_process(self, tmp_path: Path) -> None:
        path = tmp_path / "part.alive"
        path.write_text(f"{time.time()}")  # as written before heartbeats named their process
        beat = read_heartbeat(path)
        assert beat is not None and beat.pid is None

    def test_no_file_or_an_unreadable_one_is_no_heartbeat(self, tmp_path: Path) -> None:
        assert read_heartbeat(tmp_path / "missing.alive") is None
        (tmp_path / "empty.alive").write_text("")
        assert read_heartbeat(tmp_path / "empty.alive") is None
        (tmp_path / "junk.alive").write_text("soon 12")
        assert read_heartbeat(tmp_path / "junk.alive") is None
