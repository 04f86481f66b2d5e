"""referrals: platform tables, referrals and their transition history

Revision ID: 0001
"""

from alembic import op

from shared.migration_pieces import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables("referrals")
    op.execute("""
        CREATE TABLE referral (
            id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL,
            nhs_number TEXT NOT NULL,
            given_name TEXT NOT NULL,
            family_name TEXT NOT NULL,
            birth_date TEXT NOT NULL,
            ics TEXT NOT NULL,
            from_org TEXT NOT NULL,
            from_practitioner TEXT NOT NULL,
            source TEXT NOT NULL,
            to_org TEXT NOT NULL,
            to_service_id TEXT NOT NULL,
            service_category TEXT NOT NULL,
            reason_codes TEXT[] NOT NULL,
            clinical_summary TEXT NOT NULL,
            priority TEXT NOT NULL,
            consent_to_referral BOOLEAN NOT NULL,
            consent_to_carer_sharing BOOLEAN NOT NULL,
            communication_needs TEXT[] NOT NULL,
            referred_from TEXT REFERENCES referral(id),
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_referral_patient ON referral (patient_id)")
    op.execute("CREATE INDEX ix_referral_to_org_state ON referral (to_org, state)")
    op.execute("""
        CREATE TABLE referral_transition (
            id SERIAL PRIMARY KEY,
            referral_id TEXT NOT NULL REFERENCES referral(id),
            from_state TEXT,
            to_state TEXT NOT NULL,
            actor TEXT NOT NULL,
            actor_org TEXT NOT NULL,
            reason_code TEXT,
            event_id TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute(
        "CREATE INDEX ix_referral_transition_referral_id ON referral_transition (referral_id)"
    )


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")
