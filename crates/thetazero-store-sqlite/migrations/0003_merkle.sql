-- The verifiable log: exact leaf bytes, stored interior hashes, signed
-- checkpoints. All append-only; payloads and their salts stay deletable so
-- that retention can remove details without breaking any proof.

CREATE TABLE audit_leaves (
    account_id INTEGER NOT NULL,
    leaf_index INTEGER NOT NULL,
    leaf_bytes BLOB    NOT NULL,
    leaf_hash  BLOB    NOT NULL,
    PRIMARY KEY (account_id, leaf_index)
) WITHOUT ROWID;

CREATE TABLE audit_hashes (
    account_id    INTEGER NOT NULL,
    storage_index INTEGER NOT NULL,
    hash          BLOB    NOT NULL,
    PRIMARY KEY (account_id, storage_index)
) WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    account_id INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    note       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, size)
) WITHOUT ROWID;

-- The salt of each payload commitment; deleted with the payload.
CREATE TABLE audit_payload_salts (
    audit_id INTEGER PRIMARY KEY,
    salt     BLOB NOT NULL
);

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
