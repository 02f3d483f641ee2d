-- Permission requests: an agent asks for more than it holds; the account's
-- owner approves or denies. An approved request is a grant, laid over the
-- agent's own configuration while it lasts.

CREATE TABLE permission_requests (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       BIGINT NOT NULL REFERENCES accounts(id),
    agent_id         BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    requested_by     BIGINT,
    grant_json       TEXT   NOT NULL,
    justification    TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    expires_at       BIGINT NOT NULL,
    decided_by       BIGINT,
    decision_reason  TEXT,
    decided_at       BIGINT,
    grant_expires_at BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX permission_requests_account ON permission_requests(account_id, status);
