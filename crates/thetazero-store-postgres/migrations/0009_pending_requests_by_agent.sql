-- An agent's pending permission requests, counted when a request is made
-- (the `pending_requests_per_agent` quota) while the agent's row is locked:
-- without this index the count read every pending request of the account.
CREATE INDEX permission_requests_agent_pending
    ON permission_requests(account_id, agent_id, expires_at)
    WHERE status = 'pending';
