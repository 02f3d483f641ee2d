-- Accounts, API keys, agents, agent context and the audit log.
-- Migrations are only ever added; never edit one that has shipped. Names and
-- meanings match the SQLite backend's migration of the same name. Times are
-- BIGINT microseconds since the Unix epoch, as in SQLite; JSON documents are
-- TEXT holding serde_json's own serialisation, so they read back byte for byte
-- (JSONB would reorder keys and refuse "\u0000").

CREATE TABLE deployment (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   BIGINT  NOT NULL REFERENCES accounts(id),
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    hash         BYTEA   NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    is_owner     BOOLEAN NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE agents (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    name        TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    description TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    entry_code  TEXT   NOT NULL,
    config      TEXT   NOT NULL,
    permissions TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE agent_context (
    agent_id   BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);

-- The next leaf index of each account's log. Indices come from this counter,
-- updated in the same transaction as the insert, never from a sequence: a
-- rolled-back transaction must not leave a gap that looks like a deletion.
-- The row lock the update takes also serialises appends to one account's log
-- across every process until the transaction ends.
CREATE TABLE audit_log_heads (
    account_id BIGINT PRIMARY KEY,
    size       BIGINT NOT NULL
);

-- No foreign keys: deleting an agent or a key must never reach the log.
CREATE TABLE audit_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       BIGINT  NOT NULL,
    leaf_index       BIGINT  NOT NULL,
    timestamp        BIGINT  NOT NULL,
    agent_id         BIGINT,
    execution_id     BIGINT,
    key_id           BIGINT,
    action_type      TEXT    NOT NULL,
    action_category  TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    permission_state TEXT    NOT NULL,
    is_violation     BOOLEAN NOT NULL,
    input_summary    TEXT,
    output_summary   TEXT,
    UNIQUE (account_id, leaf_index)
);
CREATE INDEX audit_events_account_time ON audit_events(account_id, timestamp);

-- Append-only, enforced by the database as policy (tamper evidence comes from
-- the Merkle log, not from here). The error is an integrity-constraint one,
-- as SQLite's RAISE(ABORT) is, so both backends report it alike.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
-- TRUNCATE skips row triggers; only a statement trigger sees it.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Full event details, kept apart so that retention can remove them.
CREATE TABLE audit_payloads (
    audit_id BIGINT PRIMARY KEY,
    payload  TEXT NOT NULL
);
