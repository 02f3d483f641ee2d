//! Losing the database: calls fail promptly with `Unavailable` while it is
//! unreachable, and the store recovers by itself when it returns. The
//! database is cut off with a TCP proxy on 127.0.0.1 that the test controls;
//! must not assert on how long anything took.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, Schema};
use thetazero_core::audit::{AuditEvent, AuditQuery};
use thetazero_core::store::{Store, StoreError};
use thetazero_store_postgres::{PgOptions, PgStore};

fn options() -> PgOptions {
    PgOptions {
        max_connections: 4,
        connect_timeout: Duration::from_secs(1),
        wait_timeout: Duration::from_secs(1),
        ..PgOptions::default()
    }
}

/// Bounds a call so that a hang fails the test instead of stalling it; the
/// bound is far above the configured timeouts, so it asserts no timing.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the call returned instead of hanging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_and_then_recovers() {
    let schema = Schema::create().await;
    let proxy = Proxy::start().await;
    let store: Arc<dyn Store> = Arc::new(
        PgStore::connect_config(proxy.route(schema.config()), options())
            .await
            .unwrap(),
    );
    let account = store.create_account("a").await.unwrap().id;
    // Warm several pooled connections so that the cut breaks live ones.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ping().await })
        })
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }

    proxy.cut();
    for _ in 0..6 {
        match bounded(store.get_account(account)).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    match bounded(store.append_audit(vec![AuditEvent::named(account, "x", "t", "lost")])).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }

    proxy.restore();
    // A pooled connection that died unnoticed may fail one more call; after
    // that the pool has replaced it.
    let mut recovered = false;
    for _ in 0..(options().max_connections + 1) {
        match bounded(store.ping()).await {
            Ok(()) => {
                recovered = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(recovered, "the store recovers once the database is back");
    store
        .append_audit(vec![AuditEvent::named(account, "x", "t", "kept")])
        .await
        .unwrap();
    let page = store
        .query_audit(
            account,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The append refused during the outage left no trace and no gap.
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].leaf_index, 0);
    assert_eq!(page.items[0].event.description, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_an_unreachable_database_is_unavailable() {
    let schema = Schema::create().await;
    let proxy = Proxy::start().await;
    proxy.cut();
    match bounded(PgStore::connect_config(
        proxy.route(schema.config()),
        options(),
    ))
    .await
    {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connected through a cut proxy"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced() {
    let schema = Schema::create().await;
    // A name of its own, so the test kills this store's connections only.
    let mut config = schema.config();
    config.application_name(&schema.name);
    let store = PgStore::connect_config(config, PgOptions::default())
        .await
        .unwrap();
    let account = store.create_account("a").await.unwrap().id;
    let admin = schema.admin().await;
    let killed: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
             WHERE application_name = $1) t",
            &[&schema.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    let mut ok = false;
    for _ in 0..(PgOptions::default().max_connections + 1) {
        match store.get_account(account).await {
            Ok(Some(_)) => {
                ok = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok);
}
