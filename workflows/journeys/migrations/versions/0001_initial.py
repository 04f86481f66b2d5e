"""journeys: platform tables and the alerts read model

Revision ID: 0001
"""

from alembic import op

from shared.migration_pieces import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables("journeys")
    # one row per alert, as the workflow last reported it (seq orders the reports)
    op.execute("""
        CREATE TABLE journey_alert (
            alert_id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule TEXT NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            explanation TEXT NOT NULL,
            evidence JSONB NOT NULL,
            referral_id TEXT,
            assignee TEXT,
            raised_at TIMESTAMPTZ NOT NULL,
            acknowledged_at TIMESTAMPTZ,
            escalated_at TIMESTAMPTZ,
            resolved_at TIMESTAMPTZ,
            resolution TEXT,
            snoozed_until TIMESTAMPTZ,
            seq INTEGER NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_journey_alert_patient ON journey_alert (patient_id)")
    op.execute(
        "CREATE INDEX ix_journey_alert_open ON journey_alert (status, severity) "
        "WHERE status <> 'resolved'"
    )
    # every change, once: the activity may run more than once, the row is written once
    op.execute("""
        CREATE TABLE journey_alert_change (
            alert_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            change TEXT NOT NULL,
            status TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (alert_id, seq))""")


def downgrade() -> None:
    raise NotImplementedError("journeys migrations are forward-only")
