-- Executions and the per-account storage agents share.

CREATE TABLE executions (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          BIGINT  NOT NULL REFERENCES accounts(id),
    agent_id            BIGINT  NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    agent_version       TEXT    NOT NULL,
    code_sha256         TEXT    NOT NULL,
    key_id              BIGINT,
    parent_execution_id BIGINT,
    status              TEXT    NOT NULL,
    input               TEXT    NOT NULL,
    output              TEXT,
    report              TEXT    NOT NULL,
    violation_count     BIGINT  NOT NULL DEFAULT 0,
    was_terminated      BOOLEAN NOT NULL DEFAULT FALSE,
    duration_ms         BIGINT  NOT NULL DEFAULT 0,
    started_at          BIGINT  NOT NULL,
    finished_at         BIGINT
);
CREATE INDEX executions_agent ON executions(agent_id, id);

CREATE TABLE account_storage (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);
