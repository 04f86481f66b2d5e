"""The supervisor under the two faults issue #16 found under kill -9: a heartbeat left by a
killed process vouching for the process that replaced it, and two `waymark up` at the same
moment starting the same parts. Real processes of the test instance, no mocks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools import stack
from shared.settings import Settings, settings_env
from tests.helpers import eventually


def _instance_pids(s: Settings, module: str) -> list[int]:
    """Live processes of this instance running `python -m <module>`, tracked or not."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            module.encode() in argv
            and f"WAYMARK_INSTANCE={s.instance}".encode() in env
            and f"WAYMARK_HOME={s.home}".encode() in env
            and stack.pid_alive(int(proc.name))
        ):
            found.append(int(proc.name))
    return sorted(found)


def _waymark(s: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=settings_env(s),
    )


def _lock_holder(s: Settings, seconds: float) -> subprocess.Popen[str]:
    """Another supervisor of the instance, as `waymark up` or `down` is while it runs: a real
    process holding the instance's lock file (an exclusive flock) for `seconds`."""
    s.run_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n",
            str(s.run_dir / "stack.lock"),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


_BEATER = """
import sys, time
from pathlib import Path
from shared.heartbeat import write_heartbeat
heartbeat, go = Path(sys.argv[1]), Path(sys.argv[2])
while True:
    if go.exists():
        write_heartbeat(heartbeat)
    time.sleep(0.1)
"""


class TestHeartbeatProbe:
    async def test_a_fresh_heartbeat_counts_only_from_the_process_the_supervisor_started(
        self, settings, tmp_path
    ):
        s = settings.model_copy(update={"home": tmp_path})
        s.run_dir.mkdir(parents=True)
        heartbeat, go = s.run_dir / "beater.alive", tmp_path / "go"
        probe = stack.heartbeat_probe("beater")
        pid = stack.spawn(
            [sys.executable, "-c", _BEATER, str(heartbeat), str(go)],
            log=tmp_path / "beater.log",
            pid_file=s.run_dir / "beater.pid",
            cwd=stack.REPO_ROOT,
        )
        try:
            # another process's heartbeat, just written (as a killed predecessor leaves it)
            once = "import sys; from pathlib import Path; from shared.heartbeat import "
            once += "write_heartbeat; write_heartbeat(Path(sys.argv[1]))"
            subprocess.run(
                [sys.executable, "-c", once, str(heartbeat)], cwd=stack.REPO_ROOT, check=True
            )
            assert time.time() - heartbeat.stat().st_mtime < 15
            assert not await probe(s)
            go.touch()  # now the tracked process beats
            assert await eventually(lambda: probe(s), timeout=30)
        finally:
            stack.stop_pid(s.run_dir / "beater.pid")
        assert not stack.pid_alive(pid)
        assert not await probe(s)  # nobody tracked: its last heartbeat vouches for nothing


class TestAHeartbeatVouchesOnlyForItsOwnProcess:
    async def test_a_consumer_restarted_after_kill_9_is_healthy_only_once_it_beats_itself(
        self, running_apps
    ):
        s = running_apps
        part = stack.part_by_name("referrals-consumer")
        await part.start(s)  # running and healthy, as `waymark up` leaves it
        pid_file, heartbeat = part.pid_file(s), s.run_dir / "referrals-consumer.alive"
        old = stack.read_pid(pid_file)
        assert old is not None
        os.killpg(old, signal.SIGKILL)
        await eventually(lambda: not stack.pid_alive(old), timeout=15)
        # what the killed process left behind still looks fresh
        assert time.time() - heartbeat.stat().st_mtime < 15

        await part.start(s)  # what `waymark up` does for a part whose process died

        new = stack.read_pid(pid_file)
        assert new is not None and new != old
        # healthy on a heartbeat the new process wrote after it was started, not the dead one's
        assert heartbeat.stat().st_mtime >= pid_file.stat().st_mtime
        assert await part.probe(s)
        assert _instance_pids(s, "services.referrals.consumers") == [new]


class TestOneUpOrDownAtATime:
    async def test_up_waits_while_another_up_or_down_of_the_instance_runs(self, running_apps):
        s = running_apps
        part = stack.part_by_name("care-plans-consumer")
        part.stop(s)
        holder = _lock_holder(s, 30)
        up = _waymark(s, "up")
        try:
            # while the other supervisor works, this one starts nothing
            while holder.poll() is None:
                assert stack.read_pid(part.pid_file(s)) is None, "started under another up"
                assert up.poll() is None, up.communicate()
                await asyncio.sleep(0.1)
            out, err = await asyncio.to_thread(up.communicate, timeout=300)
        finally:
            holder.kill()
            up.kill()
        assert up.returncode == 0, err
        assert await part.probe(s)
        assert _instance_pids(s, "services.care_plans.consumers") == [
            stack.read_pid(part.pid_file(s))
        ]

    def test_down_refuses_after_its_wait_naming_the_run_that_holds_the_instance(
        self, settings, tmp_path
    ):
        s = settings.model_copy(update={"home": tmp_path})
        holder = _lock_holder(s, 60)
        try:
            down = _waymark(s, "down", "--wait", "1")
            _, err = down.communicate(timeout=60)
        finally:
            holder.kill()
        assert down.returncode == 1
        assert f"another `waymark up` or `down` of instance {s.instance!r}" in err, err
        assert "did not finish within 1s" in err and str(s.run_dir / "stack.lock") in err

    async def test_two_ups_at_the_same_moment_start_each_part_once(self, running_apps):
        s = running_apps
        names = {
            "referrals-consumer": "services.referrals.consumers",
            "care-plans-consumer": "services.care_plans.consumers",
            "notifications-consumer": "services.notifications.consumers",
            "journeys-bridge": "workflows.journeys.bridge",
        }
        parts = [stack.part_by_name(n) for n in names]
        for p in parts:
            p.stop(s)
        tracked: dict[str, set[int]] = {n: set() for n in names}
        ups = [_waymark(s, "up"), _waymark(s, "up")]
        try:
            while any(u.poll() is None for u in ups):
                for p in parts:
                    pid = stack.read_pid(p.pid_file(s))
                    if pid is not None:
                        tracked[p.name].add(pid)
                await asyncio.sleep(0.05)
            errors = [u.communicate()[1] for u in ups]
        finally:
            for u in ups:
                u.kill()
        assert [u.returncode for u in ups] == [0, 0], errors
        for p in parts:
            pid = stack.read_pid(p.pid_file(s))
            # one process, started once, and it is the one the pid file tracks
            assert tracked[p.name] == {pid}, (p.name, tracked[p.name])
            assert _instance_pids(s, names[p.name]) == [pid], p.name
            assert await p.probe(s), p.name
