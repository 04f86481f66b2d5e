"""notifications: the referral history, every referral state change the consumer has seen (the
ICS leads' overview counts referrals and times triage and treatment from it)

Revision ID: 0002
Revises: 0001

The referral index keeps only each referral's latest state; the overview needs when each
referral was submitted, first triaged and first seen. The history starts with this revision:
events consumed before it are in the index only (their referrals count nowhere in the overview).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # one row per referral event (never a flag, which changes no state); the event id makes a
    # redelivered event a no-op
    op.execute("""
        CREATE TABLE referral_history (
            event_id TEXT PRIMARY KEY,
            referral_id TEXT NOT NULL,
            patient_id TEXT NOT NULL,
            state TEXT NOT NULL,
            previous_state TEXT,
            service_category TEXT NOT NULL,
            from_org TEXT NOT NULL,
            to_org TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL)""")
    # the overview's cohort: referrals first submitted in a window of months
    op.execute("CREATE INDEX ix_referral_history_state_at ON referral_history (state, at)")
    # one referral's events in time order: its first submission, first triage decision, first
    # attendance; and the first referral an alert names
    op.execute(
        "CREATE INDEX ix_referral_history_referral ON referral_history (referral_id, state, at)"
    )
    op.execute("CREATE INDEX ix_referral_history_patient ON referral_history (patient_id, at)")


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
