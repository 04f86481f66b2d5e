"""integration: platform tables, registered source systems, contacts (encounters), the message
log that makes every source's messages idempotent, and dead letters

Revision ID: 0001
"""

from alembic import op

from shared.migration_pieces import (
    create_platform_tables,
    make_audit_log_append_only,
    park_failing_outbox_rows,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CHANNELS = "('hl7v2', 'fhir', 'bulk')"


def upgrade() -> None:
    create_platform_tables("integration")
    park_failing_outbox_rows()
    make_audit_log_append_only()
    op.execute(
        f"""CREATE TABLE source_system (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            org_code TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN {CHANNELS}),
            -- HL7 v2: the MSH-4 sending facility this source's messages carry
            sending_facility TEXT UNIQUE,
            -- FHIR: the token subject (client id) the source calls with
            client_id TEXT UNIQUE,
            active BOOLEAN NOT NULL DEFAULT true,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    op.execute(
        """CREATE TABLE encounter (
            id UUID PRIMARY KEY,
            source_system TEXT NOT NULL REFERENCES source_system (id),
            -- the source's own id of the contact (visit number, Encounter id, extract row key);
            -- it never leaves this service
            source_ref TEXT NOT NULL,
            patient_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            contact_kind TEXT NOT NULL,
            planned BOOLEAN NOT NULL,
            status TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            ended_at TIMESTAMPTZ,
            source_org TEXT NOT NULL,
            chief_complaint TEXT,
            diagnosis_codes TEXT[] NOT NULL DEFAULT '{}',
            attendance_category TEXT,
            discharge_destination TEXT,
            channel TEXT NOT NULL CHECK (channel IN ('hl7v2', 'fhir', 'bulk')),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (source_system, source_ref))"""
    )
    op.execute("CREATE INDEX ix_encounter_patient ON encounter (patient_id, started_at)")
    op.execute(
        f"""CREATE TABLE inbound_message (
            source_system TEXT NOT NULL REFERENCES source_system (id),
            -- HL7 v2 MSH-10, a FHIR Bundle or resource id, an extract file + row
            control_id TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN {CHANNELS}),
            received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            -- accepted (applied), refused (a dead letter holds it)
            outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'refused')),
            -- the acknowledgement given (HL7 v2: AA, AE, AR) and why, for a duplicate's answer
            ack_code TEXT NOT NULL,
            detail TEXT,
            -- SHA-256 of the message as received: the same control id with other content is
            -- a different message, and answered so
            digest TEXT NOT NULL,
            PRIMARY KEY (source_system, control_id))"""
    )
    op.execute("CREATE INDEX ix_inbound_received ON inbound_message (source_system, received_at)")
    op.execute(
        f"""CREATE TABLE dead_letter (
            id UUID PRIMARY KEY,
            -- null when the sender is not a registered source
            source_system TEXT,
            channel TEXT NOT NULL CHECK (channel IN {CHANNELS}),
            control_id TEXT,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            reason TEXT NOT NULL,
            -- the message as received (it may hold identifiers: it stays in this schema, is
            -- never listed by the API, and is only re-driven)
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'redriven', 'discarded')),
            attempts INTEGER NOT NULL DEFAULT 0,
            resolved_at TIMESTAMPTZ,
            resolved_by TEXT)"""
    )
    op.execute(
        "CREATE INDEX ix_dead_letter_open ON dead_letter (received_at) WHERE status = 'open'"
    )


def downgrade() -> None:
    raise NotImplementedError("integration migrations are forward-only")
