-- Accounts, API keys, agents, agent context and the audit log.
-- Migrations are only ever added; never edit one that has shipped.

CREATE TABLE deployment (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    hash         BLOB    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    is_owner     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE agents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    description TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    entry_code  TEXT    NOT NULL,
    config      TEXT    NOT NULL,
    permissions TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE agent_context (
    agent_id   INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, key)
);

-- The next leaf index of each account's log. Indices come from this counter,
-- updated in the same transaction as the insert, never from a sequence: a
-- rolled-back transaction must not leave a gap that looks like a deletion.
CREATE TABLE audit_log_heads (
    account_id INTEGER PRIMARY KEY,
    size       INTEGER NOT NULL
);

-- No foreign keys: deleting an agent or a key must never reach the log.
CREATE TABLE audit_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL,
    leaf_index       INTEGER NOT NULL,
    timestamp        INTEGER NOT NULL,
    agent_id         INTEGER,
    execution_id     INTEGER,
    key_id           INTEGER,
    action_type      TEXT    NOT NULL,
    action_category  TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    permission_state TEXT    NOT NULL,
    is_violation     INTEGER NOT NULL,
    input_summary    TEXT,
    output_summary   TEXT,
    UNIQUE (account_id, leaf_index)
);
CREATE INDEX audit_events_account_time ON audit_events(account_id, timestamp);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

-- Full event details, kept apart so that retention can remove them.
CREATE TABLE audit_payloads (
    audit_id INTEGER PRIMARY KEY,
    payload  TEXT NOT NULL
);
