#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume
# (docker-entrypoint-initdb.d). schema.sql (applied by the indexer) creates the
# NOLOGIN role `indexer_reader` and grants it SELECT on the dashboard views only;
# Grafana logs in as `grafana_reader`, a member of that role and nothing more.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v reader_password="${GRAFANA_READER_PASSWORD:?GRAFANA_READER_PASSWORD is not set}" <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'indexer_reader') THEN
        CREATE ROLE indexer_reader NOLOGIN;
    END IF;
END
$$;
CREATE ROLE grafana_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD :'reader_password';
GRANT indexer_reader TO grafana_reader;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
SQL
