-- One-time setup of the PostgreSQL database that several Knooppunt gateway replicas share
-- (docs/operations.md, "Several replicas with PostgreSQL"). Run as a PostgreSQL superuser:
--
--   sudo -u postgres psql -v writer_password="$(cat writer.pw)" \
--        -v auditor_password="$(cat auditor.pw)" -f deploy/postgres/setup.sql
--
-- Two login roles, kept apart:
--   knooppunt_writer   the gateways: owns the tables; the gateway makes and migrates them
--                      itself at start (versioned, table knooppunt_schema_migrations);
--   knooppunt_auditor  the auditor (knooppunt-audit, the Auditor service): may connect and
--                      read the audit tables, nothing else: no meldingen (they hold payloads),
--                      no writes. The audit schema's migration grants it SELECT on the audit
--                      tables when they are made.
-- Neither role is a superuser, may create roles or databases, or bypasses row security.
\set ON_ERROR_STOP on
CREATE ROLE knooppunt_writer LOGIN PASSWORD :'writer_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE ROLE knooppunt_auditor LOGIN PASSWORD :'auditor_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE knooppunt OWNER knooppunt_writer ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE knooppunt FROM PUBLIC;
GRANT CONNECT ON DATABASE knooppunt TO knooppunt_writer, knooppunt_auditor;
\connect knooppunt
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO knooppunt_writer;
GRANT USAGE ON SCHEMA public TO knooppunt_auditor;
