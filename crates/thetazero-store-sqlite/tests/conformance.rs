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
