#!/bin/sh
# Docker Compose only: run once by the postgres image when its data volume is first
# initialised (/docker-entrypoint-initdb.d), as the image's superuser `postgres`, which nothing
# else uses. Creates Waymark's roles from the Compose secrets (one file per role under
# /run/secrets, see docker-compose.yml) and the database, owned by the migration owner:
#
#   waymark_owner            runs `waymark migrate`, owns every schema and table
#   waymark_<part>           one runtime role per part (referrals, directory, care_plans,
#                            notifications, integration, journeys); `waymark migrate` grants each its own
#                            schema, append-only on its audit log
#   temporal                 Temporal's role: creates and owns only its two databases
#
# None of them is a superuser. Kubernetes does the same with CloudNativePG (deploy/k8s).
set -eu

role() {  # role <name> <password file> [attributes]
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
         -v name="$1" -v pw="$(cat "$2")" -v attrs="${3:-}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION %s PASSWORD %L',
              :'name', :'attrs', :'pw') \gexec
SQL
}

role waymark_owner /run/secrets/waymark_owner
for part in referrals directory care_plans notifications integration journeys; do
    role "waymark_$part" "/run/secrets/waymark_$part"
done
printf '%s' "$WAYMARK_TEMPORAL_PG_PASSWORD" > /tmp/temporal.pw
role temporal /tmp/temporal.pw CREATEDB
rm -f /tmp/temporal.pw

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE DATABASE waymark OWNER waymark_owner;
\connect waymark
-- extensions a migration uses that only a superuser may create (shared/migrations.py
-- SUPERUSER_EXTENSIONS)
CREATE SCHEMA directory AUTHORIZATION waymark_owner;
CREATE EXTENSION cube SCHEMA directory;
CREATE EXTENSION earthdistance SCHEMA directory;
SQL
