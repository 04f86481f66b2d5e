"""notifications: the dashboard's sessions, held server-side so signing out (or an idle or
absolute timeout) ends them

Revision ID: 0004
Revises: 0003

The dashboard's cookie carries only a random session id. The row is found by a hash of that
id, so a copy of the table names no cookie; it holds the user's API token sealed with a key
derived from the id (AES-GCM), so a copy of the table opens no API either.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE dashboard_session (
            id_hash TEXT PRIMARY KEY,
            user_identity TEXT NOT NULL,
            token_sealed BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at TIMESTAMPTZ NOT NULL)""")
    # ending every session of a user; clearing away sessions that have timed out
    op.execute("CREATE INDEX ix_dashboard_session_user ON dashboard_session (user_identity)")
    op.execute("CREATE INDEX ix_dashboard_session_expires ON dashboard_session (expires_at)")
    op.execute("CREATE INDEX ix_dashboard_session_seen ON dashboard_session (last_seen_at)")


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
