"""The local stack behind `waymark up`, as one namespace: `from devtools import stack`.

- `processes`: the process table (every part, as data);
- `supervisor`: start, stop, health and status of the parts, `up` and `down`;
- `postgres`, `kafka`, `temporal`: one module for each piece of infrastructure;
- `kafka_acls`: the broker's SCRAM users and each instance's ACLs (shared/kafka_principals.py);
- `health`: the probes; `process_control`: pid files, process groups, readiness waits.
"""

from devtools.stack.health import heartbeat_probe, http_probe, worker_probe
from devtools.stack.kafka import (
    drop_instance_acls,
    ensure_instance_acls,
    kafka_libs,
    kafka_probe,
    kafka_properties,
    kafka_start,
)
from devtools.stack.postgres import (
    admin_connect,
    ensure_database,
    ensure_role_passwords,
    install_postgres,
    is_local_cluster,
    pg_bin_dir,
    pg_dir,
    pg_probe,
    pg_start,
    pg_stop,
    write_role_secrets,
)
from devtools.stack.process_control import (
    REPO_ROOT,
    StackError,
    pid_alive,
    read_pid,
    run,
    spawn,
    stop_pid,
    tail,
    wait_until,
)
from devtools.stack.processes import (
    BUILT_SERVICES,
    CONSUMING_SERVICES,
    AppProcess,
    Part,
    app_processes,
    part_name,
)
from devtools.stack.supervisor import (
    app_part,
    down,
    ensure_sms_api_key,
    part_by_name,
    parts,
    prepare,
    status,
    up,
)
from devtools.stack.temporal import (
    ensure_namespace,
    temporal_binary,
    temporal_probe,
    temporal_start,
)

__all__ = [
    "BUILT_SERVICES",
    "CONSUMING_SERVICES",
    "REPO_ROOT",
    "AppProcess",
    "Part",
    "StackError",
    "admin_connect",
    "app_part",
    "app_processes",
    "down",
    "drop_instance_acls",
    "ensure_database",
    "ensure_instance_acls",
    "ensure_namespace",
    "ensure_role_passwords",
    "ensure_sms_api_key",
    "heartbeat_probe",
    "http_probe",
    "install_postgres",
    "is_local_cluster",
    "kafka_libs",
    "kafka_probe",
    "kafka_properties",
    "kafka_start",
    "part_by_name",
    "part_name",
    "parts",
    "pg_bin_dir",
    "pg_dir",
    "pg_probe",
    "pg_start",
    "pg_stop",
    "pid_alive",
    "prepare",
    "read_pid",
    "run",
    "spawn",
    "status",
    "stop_pid",
    "tail",
    "temporal_binary",
    "temporal_probe",
    "temporal_start",
    "up",
    "wait_until",
    "worker_probe",
    "write_role_secrets",
]
