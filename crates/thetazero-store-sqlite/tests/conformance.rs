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
        .append_audit(vec![AuditEvent::new(
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
        .append_audit(vec![AuditEvent::new(
            account.id,
            "agent_created",
            "agent",
            "x",
        )])
        .await
        .unwrap();
    store.store_checkpoint(account.id, 1, "note").await.unwrap();
    let conn = Connection::open(&path).unwrap();
    for table in ["audit_leaves", "audit_hashes", "audit_checkpoints"] {
        for sql in [
            format!("UPDATE {table} SET account_id = 99"),
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
            .append_audit(vec![AuditEvent::new(
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
        .append_audit(vec![AuditEvent::new(
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
