-- Executions and the per-account storage agents share.

CREATE TABLE executions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          INTEGER NOT NULL REFERENCES accounts(id),
    agent_id            INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    agent_version       TEXT    NOT NULL,
    code_sha256         TEXT    NOT NULL,
    key_id              INTEGER,
    parent_execution_id INTEGER,
    status              TEXT    NOT NULL,
    input               TEXT    NOT NULL,
    output              TEXT,
    report              TEXT    NOT NULL,
    violation_count     INTEGER NOT NULL DEFAULT 0,
    was_terminated      INTEGER NOT NULL DEFAULT 0,
    duration_ms         INTEGER NOT NULL DEFAULT 0,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER
);
CREATE INDEX executions_agent ON executions(agent_id, id);

CREATE TABLE account_storage (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);
