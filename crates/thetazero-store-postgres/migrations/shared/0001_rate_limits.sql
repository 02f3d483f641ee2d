-- Rate limits shared by every replica: one theoretical arrival time (TAT,
-- microseconds since the Unix epoch on the database's clock) per counter.
-- SQLite keeps the same numbers in its one process, so this table has no
-- counterpart among the numbered migrations both backends share.

CREATE TABLE rate_limits (
    key    TEXT   PRIMARY KEY,
    tat_us BIGINT NOT NULL
);
