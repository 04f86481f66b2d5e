"""notifications: the journey's echo of a coordinator's action confirms their history row
(alert_history.seq), and an alert change nobody needs to see is not announced

Revision ID: 0005
Revises: 0004

A coordinator's action is applied to the inbox at once and recorded in the history; the
journey then applies it and publishes its own alert event with a higher `seq` (the echo). The
echo used to add a second history row ("journey") and move the version the coordinator's
If-Match is checked against. Now it fills the `seq` of the coordinator's row (null: not yet
confirmed by the journey) and, when the row shows what the journey says, only advances the
row's `seq`. The journey's own changes carry their `seq` in the history too.

Existing rows: the journey's rows take the `seq` they named in `detail` ("seq N"); where such
a row echoed a coordinator's action (same alert, change and time), the coordinator's row takes
its `seq` and the duplicate goes.

The live stream is woken only when an alert's version moves (a new row or a change a
coordinator has not seen), not for an echo that advances `seq` alone.

The alert's `kind` (now also `pathway`) and `status` (now also `progressing`) are TEXT with
no check constraint; the values are validated by the event schemas and the inbox's enums.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE alert_history ADD COLUMN seq INTEGER")
    op.execute("""
        UPDATE alert_history SET seq = CAST(substring(detail FROM '^seq ([0-9]+)$') AS INTEGER),
            detail = NULL
        WHERE actor = 'journey' AND detail ~ '^seq [0-9]+$'""")
    op.execute("""
        UPDATE alert_history c SET seq = j.seq
        FROM alert_history j
        WHERE j.actor = 'journey' AND c.actor IS DISTINCT FROM 'journey' AND c.seq IS NULL
          AND j.alert_id = c.alert_id AND j.change = c.change AND j.at = c.at""")
    op.execute("""
        DELETE FROM alert_history j USING alert_history c
        WHERE j.actor = 'journey' AND c.actor IS DISTINCT FROM 'journey'
          AND j.alert_id = c.alert_id AND j.change = c.change AND j.at = c.at
          AND c.seq = j.seq""")
    # the consumer looks for the coordinator's row an echo confirms
    op.execute(
        "CREATE INDEX ix_alert_history_unconfirmed ON alert_history (alert_id, change, at) "
        "WHERE seq IS NULL"
    )
    op.execute("""CREATE OR REPLACE FUNCTION notify_alert() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN
        IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN RETURN NULL; END IF;
        PERFORM pg_notify('waymark_alerts', json_build_object(
            'alert_id', NEW.alert_id, 'ics', NEW.ics, 'version', NEW.version)::text);
        RETURN NULL; END $$""")


def downgrade() -> None:
    raise NotImplementedError("notifications migrations are forward-only")
