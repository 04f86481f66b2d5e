"""integration: a batch's control ids locked and their log rows read in one round trip

A delivery of a control id must wait for any other delivery of it still being applied and then
see what that one committed. The advisory locks and the log read were two statements (the
read's snapshot had to be taken after the wait); in a VOLATILE function each statement takes its
own snapshot, so one call does both, and the batch path (services/integration/applying.py) sends
it in the same statement as its contacts read: BEGIN, read, write, COMMIT for a batch (issue
#17's profile: the listener's round trips to PostgreSQL were its largest single cost).

SECURITY INVOKER (the default): it runs with the caller's privileges, and only the integration
service's roles have USAGE on this schema (shared/migrations.py).

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE FUNCTION lock_messages(systems TEXT[], controls TEXT[])
            RETURNS TABLE (m_system TEXT, m_control TEXT, m_outcome TEXT, m_digest TEXT)
            LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            -- one order in every batch, so two batches never wait on each other
            PERFORM count(pg_advisory_xact_lock(h))
               FROM (SELECT hashtextextended(s || chr(31) || c, 0) AS h
                       FROM unnest(systems, controls) AS k (s, c) ORDER BY h) AS ordered;
            -- a statement of its own: its snapshot sees what the locks waited for
            RETURN QUERY
                SELECT m.source_system, m.control_id, m.outcome, m.digest
                  FROM unnest(systems, controls) AS k (source_system, control_id)
                  JOIN inbound_message m USING (source_system, control_id)
                   FOR UPDATE OF m;
        END $$"""
    )


def downgrade() -> None:
    raise NotImplementedError("integration migrations are forward-only")
