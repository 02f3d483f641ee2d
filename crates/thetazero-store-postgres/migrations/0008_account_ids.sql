-- Ids numbered per account: the last local number given out, per account
-- and kind. Rows are locked by the update that takes a number, so replicas
-- never give the same one twice.
CREATE TABLE id_counters (
    account_id BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    next       BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);
