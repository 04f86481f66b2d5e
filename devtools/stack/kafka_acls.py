"""The local broker's identities: one SCRAM-SHA-512 user per principal of
shared/kafka_principals.py, each password generated once into an owner-only file under
<home>/kafka/users/, and each instance's ACLs (for its topic prefix) set from the same table.

Users and ACLs go through the broker's own Admin API: KafkaAcls.java, compiled once against
the broker's jars and run in one JVM for every binding (an `up` of an instance whose ACLs are
already in place changes nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from devtools.stack.process_control import StackError
from shared.kafka_principals import ADMIN, PRINCIPALS, USERS, all_acl_rules
from shared.settings import Settings, kafka_user_password_file
from shared.topics import all_topics

#: the broker's own identity (inter-broker SCRAM, controller PLAIN); a super user, never a client
BROKER_USER = "waymark-broker"
TOOL = Path(__file__).with_name("KafkaAcls.java")


def ensure_password(home: Path, user: str) -> tuple[str, bool]:
    """(password, made now) of a local principal; made once, readable by its owner only."""
    from shared.auth import write_private_file

    path = kafka_user_password_file(home, user)
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_hex(24)  # hex: nothing to quote in JAAS or --add-scram
    try:
        write_private_file(path, f"{password}\n".encode(), exclusive=True)
    except FileExistsError:  # another `up` made it first
        return path.read_text().strip(), False
    return password, True


def ensure_passwords(home: Path) -> dict[str, tuple[str, bool]]:
    return {user: ensure_password(home, user) for user in (*USERS, BROKER_USER)}


def _tool_classes(libs: Path, home: Path) -> Path:
    """KafkaAcls compiled once per source version (javac is in the JDK scripts/bootstrap.sh
    installs); compiled into a temporary directory and renamed, so concurrent `up`s agree."""
    source = TOOL.read_bytes()
    out = home / "kafka" / "tools" / hashlib.sha256(source).hexdigest()[:16]
    if (out / "KafkaAcls.class").exists():
        return out
    if shutil.which("javac") is None:
        raise StackError("Kafka's ACL tool needs the JDK: sudo apt-get install -y openjdk-17-jdk")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    res = subprocess.run(
        ["javac", "-nowarn", "-cp", f"{libs}/*", "-d", str(tmp), str(TOOL)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(f"compiling {TOOL.name} failed:\n{res.stdout}\n{res.stderr}")
    try:
        os.rename(tmp, out)
    except OSError:  # another `up` compiled it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def acl_request(s: Settings, passwords: dict[str, tuple[str, bool]]) -> dict[str, object]:
    prefix = s.topic_prefix
    managed = [{"type": "TOPIC", "name": s.topic(t.name)} for t in all_topics()]
    groups = {g for p in PRINCIPALS for g in p.groups}
    managed += [{"type": "GROUP", "name": prefix + g} for g in sorted(groups)]
    return {
        "bootstrap": s.bootstrap_servers,
        "admin": {"user": ADMIN, "password": passwords[ADMIN][0]},
        "users": [
            {"user": p.name, "password": passwords[p.name][0], "reset": passwords[p.name][1]}
            for p in PRINCIPALS
        ],
        "managed": managed,
        "acls": [
            {
                "principal": r.user,
                "type": r.resource_type,
                "name": r.name,
                "pattern": r.pattern,
                "operation": r.operation,
            }
            for r in all_acl_rules(prefix)
        ],
    }


def _stamp(s: Settings) -> Path:
    return s.home / "kafka" / "acls" / f"{s.instance}.applied"


def ensure_acls(s: Settings, libs: Path, format_id: str) -> dict[str, object]:
    """Every principal's SCRAM user present and this instance's ACLs exactly the table's.
    Skipped (no JVM) when this very request was applied to this very data directory
    (`format_id`, new at each format) before: the broker changes them no other way."""
    from shared.auth import write_private_file

    request = acl_request(s, ensure_passwords(s.home))
    digest = hashlib.sha256(json.dumps([format_id, request], sort_keys=True).encode()).hexdigest()
    stamp = _stamp(s)
    if stamp.exists() and stamp.read_text() == digest:
        return {"upserted": [], "created": 0, "deleted": 0, "unchanged": True}
    result = _run_tool(s, libs, request)
    write_private_file(stamp, digest.encode())
    return result


def drop_acls(s: Settings, libs: Path) -> dict[str, object]:
    """Remove every ACL on this instance's topics and groups (its users stay)."""
    request = acl_request(s, ensure_passwords(s.home))
    request["acls"] = []
    _stamp(s).unlink(missing_ok=True)
    return _run_tool(s, libs, request)


def _run_tool(s: Settings, libs: Path, request: dict[str, object]) -> dict[str, object]:
    classes = _tool_classes(libs, s.home)
    res = subprocess.run(
        ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*:{classes}"]
        + ["KafkaAcls"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if res.returncode != 0:
        raise StackError(
            f"setting Kafka users and ACLs failed:\n{res.stdout}\n{res.stderr[-4000:]}"
        )
    return json.loads(res.stdout.strip().splitlines()[-1])
