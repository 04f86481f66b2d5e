"""notifications: the contact index, each contact with care the EHRs reported
(`uk.waymark.encounter.recorded` on waymark.encounters.v1) at its latest revision

Revision ID: 0006
Revises: 0005

One row per encounter (Waymark's encounter id): the highest revision the consumer has seen
wins, so a redelivered or late, lower revision changes nothing. Cancelled and entered-in-error
contacts stay as such (the timeline leaves them out, the overview does not count them). Codes
only, as the event carries them: no names, NHS numbers or free text. Contacts consumed before
this revision are not here (the topic's retention is seven days; a replay fills it in).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE contact_index (
            encounter_id TEXT PRIMARY KEY,
            revision INTEGER NOT NULL CHECK (revision >= 1),
            event_id TEXT NOT NULL,
            patient_id TEXT NOT NULL,
            contact_kind TEXT NOT NULL,
            planned BOOLEAN NOT NULL,
            status TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            ended_at TIMESTAMPTZ,
            source_org TEXT NOT NULL,
            source_system TEXT NOT NULL,
            channel TEXT NOT NULL,
            chief_complaint TEXT,
            diagnosis_codes TEXT[] NOT NULL DEFAULT '{}',
            attendance_category TEXT,
            discharge_destination TEXT,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    # one person's contacts, newest first (the timeline)
    op.execute("CREATE INDEX ix_contact_index_patient ON contact_index (patient_id, started_at)")
    # the overview: the contacts that happened in a window of days
    op.execute("CREATE INDEX ix_contact_index_started ON contact_index (started_at)")
    # the overview's denominator: people with a referral event in the window
    op.execute("CREATE INDEX ix_referral_history_at ON referral_history (at)")


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
