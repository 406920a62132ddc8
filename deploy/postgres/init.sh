#!/bin/bash
# Runs once, when the postgres image initialises an empty data directory (mounted into
# /docker-entrypoint-initdb.d by docker-compose.yml): one role and one database per service,
# each database closed to other roles and with btree_gist (booking's exclusion constraint).
# The roles' passwords come from <SERVICE>_DB_PASSWORD in the container's environment.
set -eo pipefail

for service in booking waitlist billing notify; do
  password_var="${service^^}_DB_PASSWORD"
  password="${!password_var}"
  if [ -z "$password" ]; then
    echo "init.sh: $password_var is not set" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set=service="$service" --set=password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$service" <<'SQL'
CREATE EXTENSION IF NOT EXISTS btree_gist;
SQL
done
