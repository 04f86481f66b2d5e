"""referrals: the person's registered GP practice (ODS code), carried by referral events

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referral", sa.Column("registered_practice", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")
