-- The verifiable log: exact leaf bytes, stored interior hashes, signed
-- checkpoints. All append-only; payloads and their salts stay deletable so
-- that retention can remove details without breaking any proof.

CREATE TABLE audit_leaves (
    account_id BIGINT NOT NULL,
    leaf_index BIGINT NOT NULL,
    leaf_bytes BYTEA  NOT NULL,
    leaf_hash  BYTEA  NOT NULL,
    PRIMARY KEY (account_id, leaf_index)
);

CREATE TABLE audit_hashes (
    account_id    BIGINT NOT NULL,
    storage_index BIGINT NOT NULL,
    hash          BYTEA  NOT NULL,
    PRIMARY KEY (account_id, storage_index)
);

CREATE TABLE audit_checkpoints (
    account_id BIGINT NOT NULL,
    size       BIGINT NOT NULL,
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, size)
);

-- The salt of each payload commitment; deleted with the payload.
CREATE TABLE audit_payload_salts (
    audit_id BIGINT PRIMARY KEY,
    salt     BYTEA NOT NULL
);

-- Same refusals as audit_events (0001), with the function defined there.
CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_leaves_no_truncate BEFORE TRUNCATE ON audit_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_hashes_no_truncate BEFORE TRUNCATE ON audit_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
