"""integration: one contact reported by two sources is one contact (encounter_alias)

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE encounter_alias (
            source_system TEXT NOT NULL REFERENCES source_system (id),
            source_ref TEXT NOT NULL,
            encounter_id UUID NOT NULL REFERENCES encounter (id),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (source_system, source_ref))"""
    )
    op.execute("CREATE INDEX ix_encounter_alias_encounter ON encounter_alias (encounter_id)")


def downgrade() -> None:
    raise NotImplementedError("integration migrations are forward-only")
