-- Leaves and interior hashes keyed by one integer, account_id * 2^40 + index,
-- instead of a composite WITHOUT ROWID key. An append is then an insert at
-- the right edge of a rowid B-tree (for the highest account, at the right
-- edge of the whole tree), which SQLite splits by starting a new page rather
-- than rebalancing three neighbours: fewer pages written per commit.
-- `account_id` and the index stay readable as generated columns.

CREATE TABLE audit_leaves_keyed (
    leaf_key   INTEGER PRIMARY KEY,
    leaf_bytes BLOB    NOT NULL,
    leaf_hash  BLOB    NOT NULL,
    account_id INTEGER GENERATED ALWAYS AS (leaf_key >> 40) VIRTUAL,
    leaf_index INTEGER GENERATED ALWAYS AS (leaf_key & 1099511627775) VIRTUAL
);
INSERT INTO audit_leaves_keyed (leaf_key, leaf_bytes, leaf_hash)
    SELECT (account_id << 40) | leaf_index, leaf_bytes, leaf_hash
    FROM audit_leaves ORDER BY account_id, leaf_index;
DROP TABLE audit_leaves;
ALTER TABLE audit_leaves_keyed RENAME TO audit_leaves;

CREATE TABLE audit_hashes_keyed (
    hash_key      INTEGER PRIMARY KEY,
    hash          BLOB    NOT NULL,
    account_id    INTEGER GENERATED ALWAYS AS (hash_key >> 40) VIRTUAL,
    storage_index INTEGER GENERATED ALWAYS AS (hash_key & 1099511627775) VIRTUAL
);
INSERT INTO audit_hashes_keyed (hash_key, hash)
    SELECT (account_id << 40) | storage_index, hash
    FROM audit_hashes ORDER BY account_id, storage_index;
DROP TABLE audit_hashes;
ALTER TABLE audit_hashes_keyed RENAME TO audit_hashes;

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
