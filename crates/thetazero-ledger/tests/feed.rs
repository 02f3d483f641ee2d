//! The live audit feed: one poller per account delivers every appended record
//! to every subscriber, in order, including what another store instance
//! (another replica) appends.

use std::sync::Arc;

use thetazero_core::audit::AuditEvent;
use thetazero_core::store::Store;
use thetazero_ledger::feed::AuditFeed;
use thetazero_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_new_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let a = store.create_account("a").await.unwrap().id;
    let b = store.create_account("b").await.unwrap().id;
    store
        .append_audit(vec![AuditEvent::named(a, "before", "test", "x")])
        .await
        .unwrap();
    let feed = AuditFeed::new(store.clone());
    let mut one = feed.subscribe(a).await;
    let mut two = feed.subscribe(a).await;
    let mut other = feed.subscribe(b).await;
    for i in 0..50 {
        store
            .append_audit(vec![AuditEvent::named(a, "after", "test", format!("{i}"))])
            .await
            .unwrap();
    }
    store
        .append_audit(vec![AuditEvent::named(b, "theirs", "test", "y")])
        .await
        .unwrap();
    for sub in [&mut one, &mut two] {
        for expected in 1..=50u64 {
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
                .await
                .expect("delivered")
                .unwrap();
            assert_eq!(r.leaf_index, expected);
            assert_eq!(r.event.account_id, a);
        }
    }
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), other.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert_eq!(
        (r.event.account_id, r.event.action_type.as_str()),
        (b, "theirs")
    );
}
