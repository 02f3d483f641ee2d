-- External anchors of signed checkpoints: one row per checkpoint, anchor
-- kind; its status moves from pending to confirmed or failed. Not an audit
-- table: the anchored checkpoints are, and they stay immutable.

CREATE TABLE checkpoint_anchors (
    account_id      BIGINT  NOT NULL,
    checkpoint_size BIGINT  NOT NULL,
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    external_ref    TEXT,
    detail          TEXT    NOT NULL,
    failures        BIGINT  NOT NULL,
    retryable       BOOLEAN NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (account_id, checkpoint_size, kind)
);
