//! Audit log benchmark on SQLite (WAL, synchronous = FULL: every commit waits
//! for the disk), in one run:
//! - durable appends per second through the Store, batched and single, with a
//!   plain batched INSERT of rows of the same size as the baseline;
//! - inclusion-proof latency from the store at one million leaves;
//! - exporting and fully verifying a one-million-event bundle, with a naive
//!   recursive RFC 6962 root of the same leaves as the baseline.
//!
//! Run: `cargo bench -p thetazero-ledger --bench audit_log`
//! (`AUDIT_BENCH_LEAVES=100000` for a shorter run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use thetazero_core::audit::AuditEvent;
use thetazero_core::model::{AccountId, AgentId, ExecutionId, KeyId};
use thetazero_core::store::Store;
use thetazero_ledger::Ledger;
use thetazero_store_sqlite::SqliteStore;

fn event(account: AccountId, i: u64) -> AuditEvent {
    let mut e = AuditEvent::named(
        account,
        "api_call",
        "host_call",
        format!("thetazero.read_context(key=\"k{i}\")"),
    );
    e.agent_id = Some(AgentId::new(7));
    e.execution_id = Some(ExecutionId::new(i as i64 / 4 + 1));
    e.key_id = Some(KeyId::new(1));
    e.permission_state = "granted".into();
    e.input_summary = Some(format!("key=\"k{i}\""));
    e.payload = json!({"fn": "read_context", "phase": "decision", "i": i});
    e
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// A plain durable insert of rows as large as our leaves, batched the same way.
fn baseline_inserts(dir: &std::path::Path, total: u64, batch: u64) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("baseline.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE rows (id INTEGER PRIMARY KEY, account INTEGER, body BLOB);",
    )
    .unwrap();
    let body = vec![b'x'; 600];
    let started = Instant::now();
    let mut i = 0;
    while i < total {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO rows (account, body) VALUES (1, ?1)")
                .unwrap();
            for _ in 0..batch {
                stmt.execute([&body]).unwrap();
            }
        }
        tx.commit().unwrap();
        i += batch;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn appends(
    store: &Arc<dyn Store>,
    account: AccountId,
    total: u64,
    per_call: u64,
    concurrency: u64,
) -> f64 {
    let started = Instant::now();
    let calls = total / per_call / concurrency;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for c in 0..calls {
                let base = (t * calls + c) * per_call;
                let batch = (0..per_call).map(|i| event(account, base + i)).collect();
                store.append_audit(batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (calls * per_call * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn naive_root(leaves: &[Vec<u8>]) -> [u8; 32] {
    fn node(hashes: &[[u8; 32]]) -> [u8; 32] {
        if hashes.len() == 1 {
            return hashes[0];
        }
        let k = (hashes.len() as u64 - 1).next_power_of_two() as usize / 2;
        let k = if k == 0 { 1 } else { k };
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(node(&hashes[..k]));
        h.update(node(&hashes[k..]));
        h.finalize().into()
    }
    let hashes: Vec<[u8; 32]> = leaves
        .iter()
        .map(|l| {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(l);
            h.finalize().into()
        })
        .collect();
    node(&hashes)
}

#[tokio::main]
async fn main() {
    let leaves: u64 = std::env::var("AUDIT_BENCH_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let a = store.create_account("append").await.unwrap().id;
    let b = store.create_account("proofs").await.unwrap().id;

    println!("audit log on SQLite (WAL, synchronous=FULL)");
    let base = baseline_inserts(dir.path(), 200_000, 1000);
    println!(
        "{:<58} {:>12.0} /s",
        "baseline: plain INSERT of 600-byte rows, 1000 per commit", base
    );
    let batched = appends(&store, a, 200_000, 100, 8).await;
    println!(
        "{:<58} {:>12.0} /s  ({:.2}x baseline)",
        "append_audit, 100 events per call, 8 callers",
        batched,
        batched / base
    );
    let single = appends(&store, a, 40_000, 1, 64).await;
    println!(
        "{:<58} {:>12.0} /s  ({:.2}x baseline)",
        "append_audit, 1 event per call, 64 callers",
        single,
        single / base
    );

    // A log of `leaves` leaves for proofs and the bundle.
    let started = Instant::now();
    appends(&store, b, leaves, 1000, 2).await;
    let size = store.audit_log_size(b).await.unwrap();
    println!(
        "{:<58} {:>12.1} s",
        format!("built a log of {size} leaves"),
        started.elapsed().as_secs_f64()
    );

    let signer = thetazero_audit::AuditSigner::generate("bench.thetazero").unwrap();
    let ledger = Ledger::new(store.clone(), &signer.to_key_string(), "bench.thetazero").unwrap();
    ledger.checkpoint(b).await.unwrap();
    let mut lat = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size;
        let t = Instant::now();
        let proof = ledger.inclusion_proof(b, size, index).await.unwrap();
        lat.push(t.elapsed());
        assert!(!proof.is_empty());
    }
    lat.sort();
    println!(
        "{:<58} {:>9.1} µs p50 {:>9.1} µs p99",
        format!("inclusion proof from the store at {size} leaves"),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    let t = Instant::now();
    let bundle = ledger.bundle_bytes(b).await.unwrap();
    println!(
        "{:<58} {:>12.2} s  ({} MB)",
        "export the bundle",
        t.elapsed().as_secs_f64(),
        bundle.len() / 1_000_000
    );
    let t = Instant::now();
    let report =
        thetazero_audit::verify_bundle(std::io::Cursor::new(&bundle), ledger.verifier_key());
    let verify = t.elapsed().as_secs_f64();
    assert!(report.is_valid(), "{:?}", report.findings);
    println!(
        "{:<58} {:>12.2} s",
        format!("verify the {size}-event bundle (all checks)"),
        verify
    );
    let raw: Vec<Vec<u8>> = store
        .audit_leaves(b, 0, size, size)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let t = Instant::now();
    let root = naive_root(&raw);
    let naive = t.elapsed().as_secs_f64();
    assert_eq!(root, ledger.root(b, size).await.unwrap().0);
    println!(
        "{:<58} {:>12.2} s  (verify = {:.2}x)",
        "baseline: naive recursive root of the same leaves",
        naive,
        verify / naive
    );
}
