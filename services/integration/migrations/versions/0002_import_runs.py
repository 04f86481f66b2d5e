"""integration: the bulk importer's runs, one per extract file (by its SHA-256) and source, so
a killed import resumes where it stopped and a finished file is not imported again; an index
that closes a message's dead letters without a scan

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE import_run (
            source_system TEXT NOT NULL REFERENCES source_system (id),
            -- SHA-256 of the extract file: the same bytes are the same import
            file_sha256 TEXT NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
            kind TEXT NOT NULL CHECK (kind IN ('ecds', 'gpad', 'ers')),
            file_name TEXT NOT NULL,
            records_total INTEGER,
            -- records 1..records_done (in file order) are done; a resumed run starts after
            records_done INTEGER NOT NULL DEFAULT 0,
            accepted INTEGER NOT NULL DEFAULT 0,
            unchanged INTEGER NOT NULL DEFAULT 0,
            refused INTEGER NOT NULL DEFAULT 0,
            -- the line number of the last record done
            last_line INTEGER,
            status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            finished_at TIMESTAMPTZ,
            runs INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (source_system, file_sha256))"""
    )
    # every applied message closes its open dead letters by (source, control id): without an
    # index that is a scan of the dead letters per message, which a bulk import sends by the
    # hundred thousand
    op.execute(
        """CREATE INDEX ix_dead_letter_control ON dead_letter (source_system, control_id)
            WHERE status = 'open'"""
    )


def downgrade() -> None:
    raise NotImplementedError("integration migrations are forward-only")
