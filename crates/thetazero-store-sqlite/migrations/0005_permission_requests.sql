-- Permission requests: an agent asks for more than it holds; the account's
-- owner approves or denies. An approved request is a grant, laid over the
-- agent's own configuration while it lasts.

CREATE TABLE permission_requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts(id),
    agent_id         INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    requested_by     INTEGER,
    grant_json       TEXT    NOT NULL,
    justification    TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    expires_at       INTEGER NOT NULL,
    decided_by       INTEGER,
    decision_reason  TEXT,
    decided_at       INTEGER,
    grant_expires_at INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX permission_requests_account ON permission_requests(account_id, status);
