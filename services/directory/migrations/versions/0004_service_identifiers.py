"""directory: the identifiers other systems use for a service (e.g. an e-RS service id), unique
per system + value, so a standard ServiceRequest's service code maps to one directory service

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_identifier",
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "service_id",
            sa.Text(),
            sa.ForeignKey("service.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("system", "value"),
    )
    op.create_index("ix_service_identifier_service_id", "service_identifier", ["service_id"])


def downgrade() -> None:
    raise NotImplementedError("directory migrations are forward-only")
