-- Roles for a PostgreSQL deployment of thetazero where the application cannot
-- rewrite or remove audit records even if it is compromised.
--
-- thetazero_owner owns the schema and its tables: it runs migrations (start
-- the server once with its credentials, or run the migration step as it).
-- thetazero_app is what the running servers log in as: it may read and write
-- ordinary tables but only INSERT and SELECT on the audit log, and since it
-- owns nothing it cannot disable the append-only triggers either.
--
-- The triggers on audit_events stay as a second line for the owner itself;
-- neither replaces the Merkle log, which is what makes tampering evident.
--
-- Run the first part as a superuser (or a role with CREATEROLE) before the
-- first start, and the second part as thetazero_owner after every start that
-- applied migrations. Passwords and pg_hba.conf are the operator's choice.

-- [setup]
CREATE ROLE thetazero_owner LOGIN;
CREATE ROLE thetazero_app LOGIN;
CREATE SCHEMA thetazero AUTHORIZATION thetazero_owner;
GRANT USAGE ON SCHEMA thetazero TO thetazero_app;
-- Both roles find the tables without qualifying them.
ALTER ROLE thetazero_owner SET search_path = thetazero;
ALTER ROLE thetazero_app SET search_path = thetazero;

-- [grants]
-- Everything the server does to ordinary tables...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA thetazero TO thetazero_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA thetazero TO thetazero_app;
-- ...but the audit log is append-only for the application. audit_log_heads
-- (the counter it bumps), audit_payloads and audit_payload_salts (which
-- retention deletes) keep their write grants by design; the leaves, interior
-- hashes and checkpoints are what proofs cover.
REVOKE UPDATE, DELETE, TRUNCATE ON thetazero.audit_events FROM thetazero_app;
REVOKE UPDATE, DELETE, TRUNCATE ON thetazero.audit_leaves FROM thetazero_app;
REVOKE UPDATE, DELETE, TRUNCATE ON thetazero.audit_hashes FROM thetazero_app;
REVOKE UPDATE, DELETE, TRUNCATE ON thetazero.audit_checkpoints FROM thetazero_app;
-- The application reads the migration record but never writes it: a pending
-- migration makes it fail at start instead of changing the schema.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON thetazero.schema_migrations FROM thetazero_app;
