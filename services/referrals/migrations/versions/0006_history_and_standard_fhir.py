"""referrals: the EHRs' doors (#17): referrals imported from a source system's history, and
referrals sent as a standard ServiceRequest

- `source_system` + `source_ref`: the source's own referral id (e.g. an e-RS UBRN), unique per
  source: the idempotency key of the historical import.
- `consent_basis`: `explicit` (the referrer recorded the person's consent, as before) or
  `implied` (a referral for direct care sent without Waymark's consent extension, or imported
  from an EHR's history: implied consent for direct care).
- personal details and the directory service become optional: a historical import carries no
  demographics, and an imported e-RS referral may name no Waymark directory service (the
  receiving organisation and the service category are always known).
- `referral_transition.appointment_at`: the appointment a `booked` step made, and
  `referral_transition.imported`: the step came from the source's history (so a later extract
  of the same history is compared step by step with these, not with steps taken in Waymark).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referral", sa.Column("source_system", sa.Text(), nullable=True))
    op.add_column("referral", sa.Column("source_ref", sa.Text(), nullable=True))
    op.add_column(
        "referral",
        sa.Column("consent_basis", sa.Text(), nullable=False, server_default="explicit"),
    )
    op.create_index(
        "ux_referral_source",
        "referral",
        ["source_system", "source_ref"],
        unique=True,
        postgresql_where=sa.text("source_system IS NOT NULL"),
    )
    for column in (
        "to_service_id",
        "given_name",
        "family_name",
        "birth_date",
        "from_practitioner",
        "clinical_summary",
    ):
        op.alter_column("referral", column, existing_type=sa.Text(), nullable=True)
    op.add_column(
        "referral_transition",
        sa.Column("appointment_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "referral_transition",
        sa.Column("imported", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")
