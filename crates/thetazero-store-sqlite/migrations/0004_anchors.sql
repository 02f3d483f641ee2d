-- External anchors of signed checkpoints: one row per checkpoint, anchor
-- kind; its status moves from pending to confirmed or failed. Not an audit
-- table: the anchored checkpoints are, and they stay immutable.

CREATE TABLE checkpoint_anchors (
    account_id      INTEGER NOT NULL,
    checkpoint_size INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    external_ref    TEXT,
    detail          TEXT    NOT NULL,
    failures        INTEGER NOT NULL,
    retryable       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (account_id, checkpoint_size, kind)
) WITHOUT ROWID;
