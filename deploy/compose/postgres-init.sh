#!/bin/sh
# First start of the compose PostgreSQL (the official image runs /docker-entrypoint-initdb.d/
# once, on an empty data directory, as the superuser over the local socket): the service's
# roles (deploy/postgres/roles.sql) with the passwords compose passes in, the `orders`
# database, and its grants (deploy/postgres/database.sql). The schema is the migrate job's.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -f /order-service/postgres/roles.sql

# passwords as psql variables, so no quoting of their text is needed; sent as SCRAM verifiers
# (password_encryption defaults to scram-sha-256)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v migrator="$ORDER_MIGRATOR_DB_PASSWORD" \
  -v runtime="$ORDER_RUNTIME_DB_PASSWORD" \
  -v analyst="$ORDER_ANALYST_DB_PASSWORD" <<'SQL'
alter role order_migrator password :'migrator';
alter role order_runtime password :'runtime';
alter role order_analyst password :'analyst';
create database orders;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname orders \
  -f /order-service/postgres/database.sql
