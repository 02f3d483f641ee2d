//! The shared Store conformance suite, run against SQLite, plus the checks
//! only SQLite can make (its triggers, reopening a file).

use std::sync::Arc;

use rusqlite::Connection;
use thetazero_core::audit::AuditEvent;
use thetazero_core::store::Store;
use thetazero_store_sqlite::SqliteStore;

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (Arc::new(store), dir)
}

thetazero_store_tests::store_conformance!(fresh());

#[tokio::test]
async fn audit_tables_refuse_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let account = store.create_account("a").await.unwrap();
    store
        .append_audit(vec![AuditEvent::named(
            account.id,
            "agent_created",
            "agent",
            "x",
        )])
        .await
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    for sql in [
        "UPDATE audit_events SET description = 'forged'",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET leaf_index = 5",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn reopening_keeps_everything_and_reapplies_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let id = {
        let store = SqliteStore::open(&path).unwrap();
        store.create_account("kept").await.unwrap().id
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_account(id).await.unwrap().unwrap().name, "kept");
    let conn = Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, thetazero_store_sqlite::MIGRATIONS.len());
}

#[tokio::test]
async fn merkle_tables_refuse_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let account = store.create_account("a").await.unwrap();
    store
        .append_audit(vec![AuditEvent::named(
            account.id,
            "agent_created",
            "agent",
            "x",
        )])
        .await
        .unwrap();
    store.store_checkpoint(account.id, 1, "note").await.unwrap();
    let conn = Connection::open(&path).unwrap();
    for (table, column) in [
        ("audit_leaves", "leaf_key"),
        ("audit_leaves", "leaf_bytes"),
        ("audit_hashes", "hash_key"),
        ("audit_checkpoints", "account_id"),
    ] {
        for sql in [
            format!("UPDATE {table} SET {column} = 99"),
            format!("DELETE FROM {table}"),
        ] {
            let err = conn.execute(&sql, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }
}

#[tokio::test]
async fn events_from_before_leaves_get_leaves_in_order_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let account = {
        let store = SqliteStore::open(&path).unwrap();
        let account = store.create_account("a").await.unwrap();
        store
            .append_audit(vec![AuditEvent::named(
                account.id,
                "agent_created",
                "agent",
                "x",
            )])
            .await
            .unwrap();
        account
    };
    // An event as an earlier version wrote it: a row, no leaf.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO audit_events (account_id, leaf_index, timestamp, action_type, action_category, description, permission_state, is_violation)
         VALUES (?1, 1, 0, 'agent_updated', 'agent', 'old', 'n/a', 0)",
        [account.id],
    )
    .unwrap();
    conn.execute(
        "UPDATE audit_log_heads SET size = 2 WHERE account_id = ?1",
        [account.id],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let leaves = store.audit_leaves(account.id, 0, 10, 10).await.unwrap();
    assert_eq!(
        leaves.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1]
    );
    // And the log keeps growing from there.
    let next = store
        .append_audit(vec![AuditEvent::named(
            account.id,
            "agent_deleted",
            "agent",
            "x",
        )])
        .await
        .unwrap();
    assert_eq!(next[0].leaf_index, 2);
    let mut memory = thetazero_audit::MemoryHashStore::new();
    for (_, bytes) in store.audit_leaves(account.id, 0, 10, 10).await.unwrap() {
        memory.push(&bytes).unwrap();
    }
    let indexes = thetazero_audit::merkle::indexes_for_root(3).unwrap();
    let hashes = store
        .audit_hashes(account.id, indexes.clone())
        .await
        .unwrap();
    let prefetched = thetazero_audit::merkle::PrefetchedHashes::new(
        indexes
            .into_iter()
            .zip(hashes.into_iter().map(thetazero_audit::Hash)),
    );
    assert_eq!(
        thetazero_audit::merkle::root(3, &prefetched).unwrap(),
        memory.root().unwrap()
    );
}

/// A database whose leaves and hashes use the composite keys of migration
/// 0003 is moved to the packed keys of 0006 at open: every log reads back
/// the same, proves the same root, and grows from where it was.
#[tokio::test]
async fn audit_tables_move_to_packed_keys_intact() {
    use thetazero_audit::merkle;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let accounts = {
        let store = SqliteStore::open(&path).unwrap();
        let a = store.create_account("a").await.unwrap();
        let b = store.create_account("b").await.unwrap();
        for i in 0..33 {
            let account = if i % 3 == 0 { b.id } else { a.id };
            store
                .append_audit(vec![AuditEvent::named(account, "api_call", "host", "x")])
                .await
                .unwrap();
        }
        [a.id, b.id]
    };
    /// `(account, index, bytes)` of every leaf, then of every stored hash.
    type Rows = Vec<(i64, i64, Vec<u8>)>;
    let dump = |conn: &Connection| -> (Rows, Rows) {
        let rows = |sql: &str| {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        (
            rows("SELECT account_id, leaf_index, leaf_bytes FROM audit_leaves ORDER BY account_id, leaf_index"),
            rows("SELECT account_id, storage_index, hash FROM audit_hashes ORDER BY account_id, storage_index"),
        )
    };
    // Back to the layout of migration 0003, as an older version left it.
    let conn = Connection::open(&path).unwrap();
    let before = dump(&conn);
    assert_eq!(before.0.len(), 33);
    conn.execute_batch(
        "CREATE TABLE old_leaves (account_id INTEGER NOT NULL, leaf_index INTEGER NOT NULL,
             leaf_bytes BLOB NOT NULL, leaf_hash BLOB NOT NULL,
             PRIMARY KEY (account_id, leaf_index)) WITHOUT ROWID;
         INSERT INTO old_leaves SELECT account_id, leaf_index, leaf_bytes, leaf_hash FROM audit_leaves;
         CREATE TABLE old_hashes (account_id INTEGER NOT NULL, storage_index INTEGER NOT NULL,
             hash BLOB NOT NULL, PRIMARY KEY (account_id, storage_index)) WITHOUT ROWID;
         INSERT INTO old_hashes SELECT account_id, storage_index, hash FROM audit_hashes;
         DROP TABLE audit_leaves; DROP TABLE audit_hashes;
         ALTER TABLE old_leaves RENAME TO audit_leaves;
         ALTER TABLE old_hashes RENAME TO audit_hashes;
         DELETE FROM schema_migrations WHERE name = '0006_audit_keys';",
    )
    .unwrap();
    assert_eq!(dump(&conn), before);
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(dump(&conn), before, "the same rows under the new keys");
    for account in accounts {
        let size = store.audit_log_size(account).await.unwrap();
        let next = store
            .append_audit(vec![AuditEvent::named(account, "api_call", "host", "y")])
            .await
            .unwrap();
        assert_eq!(next[0].leaf_index, size, "the log grows from where it was");
        let mut memory = thetazero_audit::MemoryHashStore::new();
        for (_, bytes) in store.audit_leaves(account, 0, 100, 100).await.unwrap() {
            memory.push(&bytes).unwrap();
        }
        let indexes = merkle::indexes_for_root(size + 1).unwrap();
        let hashes = store.audit_hashes(account, indexes.clone()).await.unwrap();
        let stored = merkle::PrefetchedHashes::new(
            indexes
                .into_iter()
                .zip(hashes.into_iter().map(merkle::Hash)),
        );
        assert_eq!(
            merkle::root(size + 1, &stored).unwrap(),
            memory.root().unwrap()
        );
    }
    // The append-only triggers came back with the tables.
    let err = conn
        .execute("DELETE FROM audit_leaves", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
}

#[tokio::test]
async fn a_new_database_has_2_kib_pages_and_an_old_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("new.db");
    drop(SqliteStore::open(&fresh).unwrap());
    let size = |path: &std::path::Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(size(&fresh), 2048);
    // A database an earlier version made with 4 KiB pages.
    let old = dir.path().join("old.db");
    Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
        .unwrap();
    let store = SqliteStore::open(&old).unwrap();
    let account = store.create_account("a").await.unwrap();
    store
        .append_audit(vec![AuditEvent::named(account.id, "api_call", "host", "x")])
        .await
        .unwrap();
    drop(store);
    assert_eq!(size(&old), 4096);
}

/// Account ids stop where the audit log's keys do: the last one works, the
/// next is refused as a conflict and leaves nothing behind.
#[tokio::test]
async fn accounts_past_the_audit_keys_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create_account("first").await.unwrap();
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'accounts'",
            [(1i64 << 23) - 2],
        )
        .unwrap();
    let last = store.create_account("last").await.unwrap();
    assert_eq!(last.id.get(), (1 << 23) - 1);
    let record = store
        .append_audit(vec![AuditEvent::named(last.id, "api_call", "host", "x")])
        .await
        .unwrap();
    assert_eq!(record[0].leaf_index, 0, "its log works");
    // Reading to the end of the last account's keys does not overflow them.
    let leaves = store.audit_leaves(last.id, 0, u64::MAX, 10).await.unwrap();
    assert_eq!(leaves.len(), 1);
    let err = store.create_account("one too many").await.unwrap_err();
    assert!(
        matches!(err, thetazero_core::store::StoreError::Conflict(_)),
        "{err:?}"
    );
    let count: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);
}

/// A stored permission request status is read back as the enum; text that
/// names none is an error, never taken for some default.
#[tokio::test]
async fn an_unknown_request_status_reads_back_as_an_error() {
    use thetazero_core::model::{
        AgentSpec, AgentStatus, NewPermissionRequest, PermissionRequestStatus,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let account = store.create_account("a").await.unwrap().id;
    let (agent, _) = store
        .upsert_agent(
            account,
            AgentSpec {
                name: "x".into(),
                version: "1.0.0".into(),
                description: String::new(),
                status: AgentStatus::Ready,
                entry_code: "return 1;".into(),
                config: Default::default(),
                permissions: thetazero_core::Permissions::None,
            },
        )
        .await
        .unwrap();
    let request = store
        .create_permission_request_audited(
            NewPermissionRequest {
                account_id: account,
                agent_id: agent.id,
                requested_by: None,
                grant: serde_json::json!({"allow_network": true}),
                justification: "j".into(),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
                code_sha256: None,
                pending_limit: None,
            },
            thetazero_core::store::no_audit(),
        )
        .await
        .unwrap();
    assert_eq!(request.status, PermissionRequestStatus::Pending);
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE permission_requests SET status = 'maybe'", [])
        .unwrap();
    assert!(store
        .permission_requests(account, Some(request.id), None, None, 1)
        .await
        .is_err());
}
