"""care_plans: platform tables, plans and their immutable versions, assessments, the
referral timeline

Revision ID: 0001
"""

from alembic import op

from shared.migration_pieces import create_platform_tables, park_failing_outbox_rows

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables("care_plans")
    park_failing_outbox_rows()
    op.execute("""
        CREATE TABLE care_plan (
            id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL UNIQUE,
            nhs_number TEXT NOT NULL,
            ics TEXT NOT NULL,
            holder_org TEXT NOT NULL,
            consented_orgs TEXT[] NOT NULL,
            current_version INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("""
        CREATE TABLE care_plan_version (
            plan_id TEXT NOT NULL REFERENCES care_plan(id),
            version INTEGER NOT NULL CHECK (version >= 1),
            content JSONB NOT NULL,
            consented_orgs TEXT[] NOT NULL,
            author TEXT NOT NULL,
            author_org TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (plan_id, version))""")
    # versions are immutable: the database refuses to change or remove one
    op.execute("""CREATE FUNCTION care_plan_version_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'care_plan_version is immutable'; END $$""")
    op.execute("""CREATE TRIGGER care_plan_version_no_change
        BEFORE UPDATE OR DELETE ON care_plan_version
        FOR EACH ROW EXECUTE FUNCTION care_plan_version_immutable()""")
    op.execute("""
        CREATE TABLE assessment (
            id TEXT PRIMARY KEY,
            plan_id TEXT NOT NULL REFERENCES care_plan(id),
            patient_id TEXT NOT NULL,
            instrument TEXT NOT NULL,
            total INTEGER NOT NULL,
            band TEXT NOT NULL,
            subscale INTEGER,
            safety_flag BOOLEAN NOT NULL,
            risk_flags JSONB NOT NULL,
            questionnaire_response JSONB NOT NULL,
            authored TIMESTAMPTZ NOT NULL,
            recorded_by TEXT NOT NULL,
            recorded_org TEXT NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute(
        "CREATE INDEX ix_assessment_plan_instrument ON assessment (plan_id, instrument, authored)"
    )
    op.execute("""
        CREATE TABLE timeline_entry (
            event_id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            state TEXT NOT NULL,
            previous_state TEXT,
            from_org TEXT NOT NULL,
            to_org TEXT NOT NULL,
            to_service_id TEXT NOT NULL,
            service_category TEXT NOT NULL,
            transition_reason TEXT,
            occurred_at TIMESTAMPTZ NOT NULL)""")
    op.execute("CREATE INDEX ix_timeline_patient ON timeline_entry (patient_id, occurred_at)")


def downgrade() -> None:
    raise NotImplementedError("care_plans migrations are forward-only")
