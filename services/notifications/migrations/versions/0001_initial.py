"""notifications: platform tables, the referral index, messages and their delivery log, the
in-app inbox, preferences, partner webhook subscriptions and deliveries, the coordinators'
alert inbox

Revision ID: 0001
"""

from alembic import op

from shared.migration_pieces import create_platform_tables, park_failing_outbox_rows

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables("notifications")
    park_failing_outbox_rows()
    # what this service knows of each referral from its events: which organisations it
    # concerns (partner isolation, the alert inbox's organisation filter)
    op.execute("""
        CREATE TABLE referral_index (
            referral_id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL,
            from_org TEXT NOT NULL,
            to_org TEXT NOT NULL,
            to_service_id TEXT NOT NULL,
            service_category TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_referral_index_patient ON referral_index (patient_id)")

    # --- messages to people: one row per (event, audience), sent by the dispatcher ----------
    op.execute("""
        CREATE TABLE message (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            audience TEXT NOT NULL,
            template TEXT NOT NULL,
            patient_id TEXT,
            referral_id TEXT,
            org TEXT,
            context JSONB NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            lease_until TIMESTAMPTZ,
            last_error TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (event_id, audience))""")
    op.execute(
        "CREATE INDEX ix_message_due ON message (next_attempt_at) "
        "WHERE status IN ('pending', 'held')"
    )
    op.execute("CREATE INDEX ix_message_referral ON message (referral_id)")
    # every attempt to reach one recipient on one channel: the delivery log
    op.execute("""
        CREATE TABLE message_delivery (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES message(id),
            recipient TEXT NOT NULL,
            channel TEXT NOT NULL,
            variant TEXT NOT NULL,
            language TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            provider_ref TEXT,
            error TEXT,
            note TEXT,
            at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_message_delivery_message ON message_delivery (message_id, at)")
    # at most one successful delivery per message and recipient
    op.execute(
        "CREATE UNIQUE INDEX ux_message_delivery_sent ON message_delivery "
        "(message_id, recipient) WHERE status = 'sent'"
    )
    # the in-app inbox of a user or of an organisation's team
    op.execute("""
        CREATE TABLE inbox_item (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            org TEXT NOT NULL,
            message_id TEXT REFERENCES message(id),
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            variant TEXT NOT NULL DEFAULT 'plain',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            read_at TIMESTAMPTZ)""")
    op.execute("CREATE INDEX ix_inbox_item_owner ON inbox_item (owner, created_at DESC)")
    op.execute(
        "CREATE UNIQUE INDEX ux_inbox_item_message ON inbox_item (message_id, owner) "
        "WHERE message_id IS NOT NULL"
    )
    # a staff user's own choices: channel order, work contact, quiet hours, language, format
    op.execute("""
        CREATE TABLE preference (
            user_id TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            channels TEXT[] NOT NULL,
            email TEXT,
            mobile TEXT,
            quiet_start TIME,
            quiet_end TIME,
            language TEXT NOT NULL DEFAULT 'en',
            variant TEXT NOT NULL DEFAULT 'plain',
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")

    # --- partner webhooks -----------------------------------------------------------------
    op.execute("""
        CREATE TABLE webhook_subscription (
            id TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            url TEXT NOT NULL,
            description TEXT,
            event_types TEXT[] NOT NULL,
            filters JSONB NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'active',
            secret TEXT NOT NULL,
            previous_secret TEXT,
            previous_secret_until TIMESTAMPTZ,
            failing_since TIMESTAMPTZ,
            disabled_at TIMESTAMPTZ,
            disabled_reason TEXT,
            created_by TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            deleted_at TIMESTAMPTZ)""")
    op.execute(
        "CREATE INDEX ix_webhook_subscription_org ON webhook_subscription (org) "
        "WHERE deleted_at IS NULL"
    )
    op.execute("""
        CREATE TABLE webhook_delivery (
            id TEXT PRIMARY KEY,
            subscription_id TEXT NOT NULL REFERENCES webhook_subscription(id),
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_time TIMESTAMPTZ NOT NULL,
            payload JSONB NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            retry_from INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            lease_until TIMESTAMPTZ,
            last_status_code INTEGER,
            last_error TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            delivered_at TIMESTAMPTZ,
            UNIQUE (subscription_id, event_id))""")
    op.execute(
        "CREATE INDEX ix_webhook_delivery_due ON webhook_delivery "
        "(next_attempt_at) WHERE status = 'pending'"
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_sub ON webhook_delivery (subscription_id, created_at)"
    )
    # the sender's claim: each partner's own due queue, and what it has in flight (leased)
    op.execute(
        "CREATE INDEX ix_webhook_delivery_sub_due ON webhook_delivery "
        "(subscription_id, next_attempt_at) WHERE status = 'pending'"
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_leased ON webhook_delivery "
        "(subscription_id) WHERE status = 'pending' AND lease_until IS NOT NULL"
    )
    op.execute("""
        CREATE TABLE webhook_attempt (
            delivery_id TEXT NOT NULL REFERENCES webhook_delivery(id),
            attempt INTEGER NOT NULL,
            at TIMESTAMPTZ NOT NULL DEFAULT now(),
            status_code INTEGER,
            error TEXT,
            duration_ms INTEGER NOT NULL,
            PRIMARY KEY (delivery_id, attempt))""")

    # --- the coordinators' alert inbox ----------------------------------------------------
    op.execute("""
        CREATE TABLE alert (
            alert_id TEXT PRIMARY KEY,
            patient_id TEXT NOT NULL,
            ics TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule TEXT NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            assignee TEXT,
            referral_ids TEXT[] NOT NULL DEFAULT '{}',
            seq INTEGER NOT NULL,
            raised_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            acknowledged_at TIMESTAMPTZ,
            snoozed_until TIMESTAMPTZ,
            resolved_at TIMESTAMPTZ,
            resolution TEXT,
            version INTEGER NOT NULL DEFAULT 1)""")
    op.execute("CREATE INDEX ix_alert_inbox ON alert (ics, status, severity, raised_at)")
    op.execute("CREATE INDEX ix_alert_patient ON alert (patient_id)")
    # every change, from the journey (its events) or from a coordinator (their actions)
    op.execute("""
        CREATE TABLE alert_history (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alert(alert_id),
            change TEXT NOT NULL,
            status TEXT NOT NULL,
            actor TEXT,
            assignee TEXT,
            detail TEXT,
            at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_alert_history_alert ON alert_history (alert_id, at)")

    # wake the dispatcher when there is something to send, and the live streams (SSE) when
    # an alert changes; NOTIFY is delivered on commit, so nothing is announced before it exists
    op.execute("""CREATE FUNCTION notify_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('waymark_dispatch', TG_TABLE_NAME); RETURN NULL; END $$""")
    op.execute("""CREATE TRIGGER message_dispatch AFTER INSERT OR UPDATE OF next_attempt_at
        ON message FOR EACH STATEMENT EXECUTE FUNCTION notify_dispatch()""")
    op.execute("""CREATE TRIGGER webhook_delivery_dispatch
        AFTER INSERT OR UPDATE OF next_attempt_at ON webhook_delivery
        FOR EACH STATEMENT EXECUTE FUNCTION notify_dispatch()""")
    op.execute("""CREATE FUNCTION notify_alert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('waymark_alerts', json_build_object(
            'alert_id', NEW.alert_id, 'ics', NEW.ics, 'version', NEW.version)::text);
        RETURN NULL; END $$""")
    op.execute("""CREATE TRIGGER alert_changed AFTER INSERT OR UPDATE ON alert
        FOR EACH ROW EXECUTE FUNCTION notify_alert()""")


def downgrade() -> None:
    raise NotImplementedError("notifications 0001 is the first revision")
