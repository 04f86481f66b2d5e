"""directory: platform tables, the ORUK-shaped directory, search indexes, Waymark taxonomies,
the synthetic postcode table

Revision ID: 0001
"""

import csv
import uuid
from pathlib import Path

from alembic import op
from sqlalchemy import Float, String, column, table, text

from shared.migration_pieces import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "('active', 'inactive', 'defunct', 'temporarily closed')"

# Waymark's taxonomies as they were at this revision (written out, not imported from
# domain.py, so this migration never changes; tests check the two agree). A later change to
# the vocabulary is a new migration.
NS = "5b0f3c1e-8d1a-4f5e-9a57-7761796d6172"
TAXONOMIES = [
    (
        "service-category",
        "Waymark service category",
        "The kind of community or NHS service, as Waymark groups them.",
        [
            (
                "pain_management_programme",
                "Pain management programme",
                "Group or individual programmes to live well with persistent pain.",
            ),
            (
                "talking_therapies_ltc",
                "Talking therapies for long-term conditions",
                "NHS Talking Therapies pathways for people with long-term physical conditions.",
            ),
            (
                "msk_physiotherapy",
                "MSK physiotherapy",
                "Musculoskeletal physiotherapy for back, neck and joint problems.",
            ),
            (
                "social_prescribing",
                "Social prescribing",
                "Link workers connecting people to community groups and practical support.",
            ),
            ("peer_support", "Peer support", "Groups run by and for people with lived experience."),
            (
                "self_management_course",
                "Self-management course",
                "Courses teaching skills to manage a long-term condition.",
            ),
            ("exercise_yoga", "Exercise and yoga", "Exercise classes, yoga and movement groups."),
            (
                "vocational_rehabilitation",
                "Vocational rehabilitation and work",
                "Support to stay in work or return to work, employment advice.",
            ),
            ("carers_support", "Carers' support", "Support for unpaid carers and families."),
            ("crisis", "Crisis support", "Urgent help in a mental health crisis."),
        ],
    ),
    (
        "condition",
        "Waymark condition served",
        "The conditions a service is for.",
        [
            (
                "persistent_pain",
                "Persistent pain",
                "Persistent or chronic pain, including back pain, neck pain and "
                "musculoskeletal pain.",
            ),
            (
                "mental_health",
                "Mental health",
                "Mental health problems, including low mood, depression, anxiety and stress.",
            ),
        ],
    ),
    (
        "delivery-mode",
        "Waymark delivery mode",
        "How the service is delivered.",
        [
            ("in_person", "In person", "Face to face at a venue."),
            ("phone", "By phone", "Sessions over the telephone."),
            ("video", "By video", "Online video sessions."),
            ("group", "In a group", "Group sessions."),
        ],
    ),
    (
        "communication-support",
        "Waymark communication support",
        "Communication support the service offers.",
        [
            ("bsl", "British Sign Language", "BSL interpreters or signing staff."),
            ("interpreters", "Interpreters", "Spoken-language interpreters."),
            ("easy_read", "Easy read", "Easy read information."),
            (
                "learning_disability",
                "Learning disability friendly",
                "Adjustments for people with a learning disability.",
            ),
            (
                "dementia_friendly",
                "Dementia friendly",
                "Adjustments for people living with dementia.",
            ),
        ],
    ),
    (
        "referral",
        "Waymark referral facts",
        "How people reach the service.",
        [
            (
                "self_referral",
                "Self-referral accepted",
                "People may refer themselves without a professional.",
            ),
            (
                "waiting_weeks",
                "Current waiting time in weeks",
                "The attribute value is the current wait from referral to first contact, in weeks.",
            ),
        ],
    ),
]

POSTCODES_CSV = Path(__file__).resolve().parents[2] / "data" / "postcodes.csv"


def upgrade() -> None:
    create_platform_tables("directory")
    # geo search: cube + earthdistance (Debian's postgresql-contrib), installed in this schema
    # because the service's search_path is only `directory`
    op.execute("CREATE EXTENSION IF NOT EXISTS cube SCHEMA directory")
    op.execute("CREATE EXTENSION IF NOT EXISTS earthdistance SCHEMA directory")
    # earthdistance's functions call earth() unqualified; pinning search_path on the wrapper
    # keeps the generated column computable from any session (restore, autovacuum, psql)
    op.execute("""
        CREATE FUNCTION geo_point(lat DOUBLE PRECISION, lon DOUBLE PRECISION) RETURNS cube
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = directory
        AS $$ SELECT ll_to_earth(lat, lon)::cube $$""")
    # OR of tsqueries, to rank by how many of the searched words a service matches
    op.execute("CREATE AGGREGATE tsquery_any(tsquery) (SFUNC = tsquery_or, STYPE = tsquery)")

    op.execute("""
        CREATE TABLE postcode (
            postcode TEXT PRIMARY KEY,
            latitude DOUBLE PRECISION NOT NULL CHECK (latitude BETWEEN -90 AND 90),
            longitude DOUBLE PRECISION NOT NULL CHECK (longitude BETWEEN -180 AND 180),
            place TEXT NOT NULL)""")
    op.execute("""
        CREATE TABLE organization (
            id TEXT PRIMARY KEY,
            org_code TEXT NOT NULL UNIQUE,
            ics TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            email TEXT,
            website TEXT,
            logo TEXT,
            uri TEXT,
            identifiers JSONB NOT NULL DEFAULT '[]',
            version INTEGER NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute(f"""
        CREATE TABLE service (
            id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL REFERENCES organization(id),
            org_code TEXT NOT NULL,
            name TEXT NOT NULL,
            alternate_name TEXT,
            description TEXT NOT NULL DEFAULT '',
            url TEXT,
            email TEXT,
            status TEXT NOT NULL CHECK (status IN {STATUSES}),
            interpretation_services TEXT,
            application_process TEXT,
            fees_description TEXT,
            accreditations TEXT,
            eligibility_description TEXT,
            minimum_age INTEGER CHECK (minimum_age BETWEEN 0 AND 130),
            maximum_age INTEGER CHECK (maximum_age BETWEEN 0 AND 130),
            assured_date DATE,
            assurer_email TEXT,
            alert TEXT,
            phones JSONB NOT NULL DEFAULT '[]',
            contacts JSONB NOT NULL DEFAULT '[]',
            schedules JSONB NOT NULL DEFAULT '[]',
            service_areas JSONB NOT NULL DEFAULT '[]',
            cost_options JSONB NOT NULL DEFAULT '[]',
            languages JSONB NOT NULL DEFAULT '[]',
            funding JSONB NOT NULL DEFAULT '[]',
            -- Waymark's facts, derived from the service's attributes when it is saved
            category TEXT NOT NULL,
            conditions TEXT[] NOT NULL,
            delivery_modes TEXT[] NOT NULL,
            communication_support TEXT[] NOT NULL,
            self_referral BOOLEAN NOT NULL,
            waiting_weeks INTEGER CHECK (waiting_weeks BETWEEN 0 AND 520),
            remote BOOLEAN NOT NULL,
            free_of_charge BOOLEAN NOT NULL,
            -- weekly opening hours as minute-of-week ranges (domain.opening_ranges)
            opening INT4MULTIRANGE NOT NULL DEFAULT '{{}}',
            -- names and descriptions of the taxonomy terms the service is linked to
            taxonomy_text TEXT NOT NULL DEFAULT '',
            -- full-text search: the name counts most, then the curated taxonomy terms (they
            -- say what the service is for in controlled words), then the free description
            search_vector TSVECTOR GENERATED ALWAYS AS (
                setweight(to_tsvector('english'::regconfig,
                                      coalesce(name, '') || ' ' || coalesce(alternate_name, '')),
                          'A') ||
                setweight(to_tsvector('english'::regconfig, taxonomy_text), 'B') ||
                setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')
            ) STORED,
            lifecycle TEXT NOT NULL CHECK (lifecycle IN ('draft', 'published', 'withdrawn')),
            withdrawal_reason TEXT,
            withdrawal_note TEXT,
            published_at TIMESTAMPTZ,
            withdrawn_at TIMESTAMPTZ,
            version INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_service_search ON service USING gin (search_vector)")
    op.execute("CREATE INDEX ix_service_organization ON service (organization_id)")
    op.execute("CREATE INDEX ix_service_listed ON service (category) WHERE lifecycle = 'published'")
    op.execute("""
        CREATE TABLE location (
            id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL REFERENCES organization(id),
            location_type TEXT CHECK (location_type IN ('physical', 'postal', 'virtual')),
            name TEXT,
            alternate_name TEXT,
            description TEXT,
            url TEXT,
            transportation TEXT,
            latitude DOUBLE PRECISION CHECK (latitude BETWEEN -90 AND 90),
            longitude DOUBLE PRECISION CHECK (longitude BETWEEN -180 AND 180),
            external_identifier TEXT,
            external_identifier_type TEXT,
            postcode TEXT,
            addresses JSONB NOT NULL DEFAULT '[]',
            accessibility JSONB NOT NULL DEFAULT '[]',
            geo cube GENERATED ALWAYS AS (geo_point(latitude, longitude)) STORED,
            CHECK ((latitude IS NULL) = (longitude IS NULL)))""")
    op.execute("CREATE INDEX ix_location_geo ON location USING gist (geo)")
    op.execute("""
        CREATE TABLE service_at_location (
            id TEXT PRIMARY KEY,
            service_id TEXT NOT NULL REFERENCES service(id) ON DELETE CASCADE,
            location_id TEXT NOT NULL REFERENCES location(id),
            description TEXT,
            position INTEGER NOT NULL,
            UNIQUE (service_id, location_id))""")
    op.execute("CREATE INDEX ix_service_at_location_location ON service_at_location (location_id)")
    op.execute("""
        CREATE TABLE taxonomy (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            uri TEXT,
            version TEXT,
            waymark BOOLEAN NOT NULL DEFAULT false)""")
    op.execute("""
        CREATE TABLE taxonomy_term (
            id TEXT PRIMARY KEY,
            code TEXT,
            name TEXT NOT NULL,
            description TEXT,
            parent_id TEXT,
            taxonomy TEXT,
            taxonomy_id TEXT REFERENCES taxonomy(id),
            language TEXT,
            term_uri TEXT,
            waymark BOOLEAN NOT NULL DEFAULT false)""")
    op.execute("CREATE INDEX ix_taxonomy_term_taxonomy ON taxonomy_term (taxonomy_id)")
    op.execute("""
        CREATE TABLE attribute (
            id TEXT PRIMARY KEY,
            service_id TEXT NOT NULL REFERENCES service(id) ON DELETE CASCADE,
            taxonomy_term_id TEXT NOT NULL REFERENCES taxonomy_term(id),
            link_type TEXT,
            value TEXT,
            position INTEGER NOT NULL)""")
    op.execute("CREATE INDEX ix_attribute_service ON attribute (service_id)")
    op.execute("CREATE INDEX ix_attribute_term ON attribute (taxonomy_term_id)")

    ns = uuid.UUID(NS)
    for key, name, description, terms in TAXONOMIES:
        tax_id = str(uuid.uuid5(ns, f"taxonomy/{key}"))
        op.execute(
            text(
                "INSERT INTO taxonomy (id, name, description, version, waymark) "
                "VALUES (:i, :n, :d, '1', true)"
            ).bindparams(i=tax_id, n=name, d=description)
        )
        for code, term_name, term_description in terms:
            op.execute(
                text(
                    "INSERT INTO taxonomy_term (id, code, name, description, taxonomy, "
                    "taxonomy_id, language, waymark) VALUES (:i, :c, :n, :d, :t, :ti, 'en', true)"
                ).bindparams(
                    i=str(uuid.uuid5(ns, f"taxonomy/{key}/{code}")),
                    c=code,
                    n=term_name,
                    d=term_description,
                    t=name,
                    ti=tax_id,
                )
            )

    postcodes = table(
        "postcode",
        column("postcode", String),
        column("latitude", Float),
        column("longitude", Float),
        column("place", String),
    )
    with POSTCODES_CSV.open(newline="") as f:
        op.bulk_insert(
            postcodes,
            [
                {
                    "postcode": r["postcode"],
                    "latitude": float(r["latitude"]),
                    "longitude": float(r["longitude"]),
                    "place": r["place"],
                }
                for r in csv.DictReader(f)
            ],
        )


def downgrade() -> None:
    raise NotImplementedError("directory migrations are forward-only")
