"""The schema pieces every part's migrations share (shared/migration_pieces.py): each emits its
DDL through Alembic's `op`, in order, and every part's migrations use them rather than a copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import migration_pieces
from shared.migrations import PART_DIRS, services_with_migrations


class _Op:
    def __init__(self) -> None:
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


@pytest.fixture
def op(monkeypatch: pytest.MonkeyPatch) -> _Op:
    recorder = _Op()
    monkeypatch.setattr(migration_pieces, "op", recorder)
    return recorder


class TestEachPieceEmitsItsDdlInOrder:
    def test_the_platform_tables_name_the_schema_in_the_outbox_notification(self, op: _Op) -> None:
        migration_pieces.create_platform_tables("care_plans")
        assert op.executed == migration_pieces.platform_tables_ddl("care_plans")
        assert any("pg_notify('waymark_outbox_care_plans'" in s for s in op.executed)

    def test_outbox_parking_adds_the_columns_and_the_parked_index(self, op: _Op) -> None:
        migration_pieces.park_failing_outbox_rows()
        assert op.executed == migration_pieces.outbox_parking_ddl()
        assert any("ix_outbox_parked" in s for s in op.executed)

    def test_the_audit_log_refuses_truncate_as_well_as_update_and_delete(self, op: _Op) -> None:
        migration_pieces.make_audit_log_append_only()
        assert op.executed == migration_pieces.append_only_ddl("audit_log")
        assert any("BEFORE TRUNCATE ON audit_log" in s for s in op.executed)
        assert any("BEFORE UPDATE OR DELETE ON audit_log" in s for s in op.executed)


def _versions() -> list[Path]:
    return sorted(
        p
        for base in PART_DIRS
        for p in base.glob("*/migrations/versions/*.py")
        if p.parent.parent.parent.name in services_with_migrations()
    )


def test_every_part_takes_the_pieces_from_the_helper_rather_than_a_copy() -> None:
    versions = _versions()
    assert {p.parent.parent.parent.name for p in versions} == set(services_with_migrations())
    for part in services_with_migrations():
        text = "\n".join(
            p.read_text(encoding="utf-8") for p in versions if p.parent.parent.parent.name == part
        )
        for piece in ("create_platform_tables", "park_failing_outbox_rows"):
            assert f"{piece}(" in text, f"{part} never calls {piece}"
        assert "make_audit_log_append_only()" in text, f"{part}'s audit log allows TRUNCATE"
        for copied in ("CREATE TABLE outbox", "parked_at", "ON audit_log"):
            assert copied not in text, f"{part}'s migrations copy {copied!r}"
