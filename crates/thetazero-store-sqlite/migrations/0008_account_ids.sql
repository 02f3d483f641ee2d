-- Ids numbered per account: the last local number given out, per account
-- and kind (agent, key, permission_request; executions are numbered in the
-- server process, which alone writes an SQLite database).
CREATE TABLE id_counters (
    account_id INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    next       INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind)
);
