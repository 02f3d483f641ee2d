//! The shared Store conformance suite run against PostgreSQL, plus the checks
//! only PostgreSQL can make: its audit triggers, migrations under concurrent
//! starts, and audit appends from two replicas. Must not assert on timing.

mod common;

use std::sync::Arc;

use common::{fresh, Schema};
use thetazero_audit::merkle;
use thetazero_core::audit::{AuditEvent, AuditQuery};
use thetazero_core::store::Store;
use thetazero_store_postgres::{PgStore, MIGRATIONS};
use tokio_postgres::error::SqlState;

thetazero_store_tests::store_conformance!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tables_refuse_update_delete_and_truncate() {
    let schema = Schema::create().await;
    let store = PgStore::connect(&schema.url()).await.unwrap();
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
    let admin = schema.admin().await;
    for table in [
        "audit_events",
        "audit_leaves",
        "audit_hashes",
        "audit_checkpoints",
    ] {
        for sql in [
            format!("UPDATE {table} SET account_id = account_id + 1"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
            format!("TRUNCATE {table} CASCADE"),
        ] {
            let err = admin.batch_execute(&sql).await.unwrap_err();
            assert_eq!(
                err.code(),
                Some(&SqlState::RESTRICT_VIOLATION),
                "{sql}: {err}"
            );
            let db = err.as_db_error().unwrap();
            assert!(db.message().contains("append-only"), "{sql}: {db}");
        }
        let n: i64 = admin
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(n >= 1, "{table} kept its rows");
    }
    let n: i64 = admin
        .query_one("SELECT COUNT(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // No foreign key reaches into the audit table, so nothing can cascade.
    let fks: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM pg_constraint
             WHERE contype = 'f' AND (conrelid::regclass::text LIKE 'audit%'
                                   OR confrelid::regclass::text LIKE 'audit%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_keeps_everything_and_reapplies_no_migration() {
    let schema = Schema::create().await;
    let id = {
        let store = PgStore::connect(&schema.url()).await.unwrap();
        store.create_account("kept").await.unwrap().id
    };
    let store = PgStore::connect(&schema.url()).await.unwrap();
    assert_eq!(store.get_account(id).await.unwrap().unwrap().name, "kept");
    let n: i64 = schema
        .admin()
        .await
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let schema = Schema::create().await;
    let url = schema.url();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let names: Vec<String> = schema
        .admin()
        .await
        .query("SELECT name FROM schema_migrations ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_append_contiguously_to_one_log() {
    let schema = Schema::create().await;
    // Two pools are two replicas as far as the database can tell.
    let replicas: Vec<Arc<PgStore>> = vec![
        Arc::new(PgStore::connect(&schema.url()).await.unwrap()),
        Arc::new(PgStore::connect(&schema.url()).await.unwrap()),
    ];
    let a = replicas[0].create_account("a").await.unwrap().id;
    let b = replicas[1].create_account("b").await.unwrap().id;
    const CALLS: usize = 60;
    const BATCH: usize = 5;
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let store = replicas[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            // Mixed batches touch both logs, in both orders, so the head
            // locks are taken from both sides at once.
            let (first, second) = if i % 3 == 0 { (b, a) } else { (a, b) };
            let events = (0..BATCH)
                .map(|j| {
                    let account = if j % 2 == 0 { first } else { second };
                    AuditEvent::named(account, "api_call", "host_call", format!("{i}/{j}"))
                })
                .collect();
            store.append_audit(events).await.unwrap()
        }));
    }
    for t in tasks {
        let records = t.await.unwrap();
        for account in [a, b] {
            let mine: Vec<u64> = records
                .iter()
                .filter(|r| r.event.account_id == account)
                .map(|r| r.leaf_index)
                .collect();
            for w in mine.windows(2) {
                assert_eq!(w[1], w[0] + 1, "one append's events are adjacent");
            }
        }
    }
    let mut total = 0;
    for account in [a, b] {
        let page = replicas[0]
            .query_audit(
                account,
                &AuditQuery {
                    limit: 10_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let indices: Vec<u64> = page.items.iter().map(|r| r.leaf_index).collect();
        assert_eq!(indices, (0..page.total).collect::<Vec<u64>>());
        total += page.total as usize;

        // The interior hashes both replicas wrote form one tree: its root
        // equals that of an independent tree over the stored leaves.
        let size = replicas[1].audit_log_size(account).await.unwrap();
        assert_eq!(size, page.total);
        let leaves = replicas[1]
            .audit_leaves(account, 0, size, size)
            .await
            .unwrap();
        let mut memory = merkle::MemoryHashStore::new();
        for (record, (index, bytes)) in page.items.iter().zip(&leaves) {
            assert_eq!(record.leaf_index, *index);
            assert_eq!(record.leaf_hash, merkle::leaf_hash(bytes).0);
            memory.push(bytes).unwrap();
        }
        let wanted = merkle::indexes_for_root(size).unwrap();
        let stored = replicas[0]
            .audit_hashes(account, wanted.clone())
            .await
            .unwrap();
        let prefetched = merkle::PrefetchedHashes::new(
            wanted.into_iter().zip(stored.into_iter().map(merkle::Hash)),
        );
        assert_eq!(
            merkle::root(size, &prefetched).unwrap(),
            memory.root().unwrap()
        );
    }
    assert_eq!(total, CALLS * BATCH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_payloads_are_kept_apart() {
    let schema = Schema::create().await;
    let store = PgStore::connect(&schema.url()).await.unwrap();
    let account = store.create_account("a").await.unwrap().id;
    let records = store
        .append_audit(vec![
            AuditEvent::named(account, "api_call", "host_call", "with")
                .payload(serde_json::json!({"url": "https://a.example", "n": 1})),
            AuditEvent::named(account, "api_call", "host_call", "without"),
        ])
        .await
        .unwrap();
    let rows = schema
        .admin()
        .await
        .query("SELECT audit_id, payload FROM audit_payloads", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), records[0].id.get());
    let payload: serde_json::Value = serde_json::from_str(rows[0].get(1)).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"url": "https://a.example", "n": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_append_does_not_spoil_its_group_commit() {
    let schema = Schema::create().await;
    let store = Arc::new(PgStore::connect(&schema.url()).await.unwrap());
    let account = store.create_account("a").await.unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        // PostgreSQL text cannot hold NUL, so every sixth append is refused;
        // appends that shared its transaction must still land.
        let description = if i % 6 == 0 {
            "bad\0".to_string()
        } else {
            format!("ok {i}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(vec![AuditEvent::named(account, "x", "t", description)])
                .await
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 10);
    let page = store
        .query_audit(
            account,
            &AuditQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 50);
    let indices: Vec<u64> = page.items.iter().map(|r| r.leaf_index).collect();
    assert_eq!(
        indices,
        (0..50).collect::<Vec<u64>>(),
        "refused appends leave no gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_mutations_commit_with_their_events_or_not_at_all() {
    let schema = Schema::create().await;
    let store = PgStore::connect(&schema.url()).await.unwrap();
    let account = store.create_account("a").await.unwrap().id;
    let key = |byte: u8| thetazero_core::model::NewKey {
        account_id: account,
        name: format!("k{byte}"),
        prefix: format!("tzk_{byte:08}"),
        hash: [byte; 32],
        scopes: vec![],
        is_owner: false,
        created_by: None,
    };
    let made = store
        .create_key_audited(
            key(1),
            Box::new(move |k| {
                vec![AuditEvent::named(
                    k.account_id,
                    "key_created",
                    "key",
                    format!("key {}", k.id),
                )]
            }),
        )
        .await
        .unwrap();
    // A mutation that fails records nothing.
    let dup = store
        .create_key_audited(
            key(1),
            Box::new(move |_| vec![AuditEvent::named(account, "key_created", "key", "dup")]),
        )
        .await;
    assert!(matches!(
        dup,
        Err(thetazero_core::store::StoreError::Conflict(_))
    ));
    // Audit runs only when the key exists.
    let missing = store
        .revoke_key_audited(
            account,
            thetazero_core::model::KeyId::new(made.id.get() + 1000),
            Box::new(move |_| vec![AuditEvent::named(account, "key_revoked", "key", "none")]),
        )
        .await
        .unwrap();
    assert!(missing.is_none());
    store
        .revoke_key_audited(
            account,
            made.id,
            Box::new(move |k| {
                vec![AuditEvent::named(
                    k.account_id,
                    "key_revoked",
                    "key",
                    format!("key {}", k.id),
                )]
            }),
        )
        .await
        .unwrap()
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
    let got: Vec<(u64, String)> = page
        .items
        .iter()
        .map(|r| (r.leaf_index, r.event.action_type.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "key_created".to_string()),
            (1, "key_revoked".to_string())
        ]
    );
}
