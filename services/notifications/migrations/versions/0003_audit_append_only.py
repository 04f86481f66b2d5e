"""notifications: the audit log refuses TRUNCATE too (it already refused UPDATE and DELETE)

Revision ID: 0003
"""

from alembic import op

from shared.audit import append_only_ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in append_only_ddl():
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
