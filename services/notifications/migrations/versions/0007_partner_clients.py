"""notifications: partner systems' OAuth clients (partner onboarding, clients/)

Revision ID: 0007
Revises: 0006

One row per client an organisation's administrator registered (or recorded, when the ICS's
provider has no dynamic registration). The client secret is never stored: the provider made it
and it was shown once. The registration access token (RFC 7592), which can read, change and
delete the client at the provider, is kept sealed (AES-256-GCM, key outside the database).
Revoked clients stay, so the audit log's client ids keep meaning something.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE partner_client (
            id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL UNIQUE,
            org TEXT NOT NULL,
            ics TEXT NOT NULL,
            name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
            scopes TEXT[] NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
            registration TEXT NOT NULL CHECK (registration IN ('dynamic', 'manual')),
            registration_client_uri TEXT,
            registration_token_sealed BYTEA,
            secret_version INTEGER NOT NULL CHECK (secret_version >= 1),
            created_by TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            secret_rotated_at TIMESTAMPTZ,
            revoked_at TIMESTAMPTZ,
            CHECK (registration = 'manual' OR status = 'revoked'
                   OR (registration_client_uri IS NOT NULL
                       AND registration_token_sealed IS NOT NULL)))""")
    # an organisation's clients, newest first (the list and the page)
    op.execute("CREATE INDEX ix_partner_client_org ON partner_client (org, created_at)")


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
