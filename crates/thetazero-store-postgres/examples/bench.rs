//! Durable audit-append throughput through the `Store` trait on PostgreSQL,
//! with one and with two `PgStore` instances (two pools, as two replicas
//! would have). Prints each case against a baseline of one-event appends
//! measured in the same run. Must not be used as a test: it asserts nothing.
//!
//! Run: `cargo run --release --example bench -- [batch] [events]` with
//! `THETAZERO_TEST_DATABASE_URL` (default: postgres://postgres@127.0.0.1:5432/test).
//! It creates a schema of its own and drops it at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thetazero_core::audit::AuditEvent;
use thetazero_core::store::Store;
use thetazero_store_postgres::{parse_url, PgOptions, PgStore};

/// Callers appending at once on each store.
const CALLERS: usize = 8;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let url = std::env::var("THETAZERO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    let schema = format!("tz_bench_{}", std::process::id());
    let base = parse_url(&url)?;
    let (admin, conn) = base.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    let result = run(&base, &schema, batch, events).await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    result
}

async fn run(
    base: &tokio_postgres::Config,
    schema: &str,
    batch: usize,
    events: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = base.clone();
    config.options(format!("-c search_path={schema}"));
    let options = PgOptions {
        max_connections: CALLERS,
        ..PgOptions::default()
    };
    let one = Arc::new(PgStore::connect_config(config.clone(), options.clone()).await?);
    let two = Arc::new(PgStore::connect_config(config, options).await?);
    let account = one.create_account("bench").await?.id;
    let mut accounts = Vec::new();
    for i in 0..(2 * CALLERS) {
        accounts.push(one.create_account(&format!("bench-{i}")).await?.id);
    }

    println!("durable audit appends: {CALLERS} callers per store, synchronous_commit as the server sets it");
    let baseline = measure(
        std::slice::from_ref(&one),
        &[account],
        1,
        events.min(20_000) / 4,
    )
    .await?;
    report("1 store,  batch 1,  one log (baseline)", baseline, baseline);
    let cases = [
        ("1 store,  one log", vec![one.clone()], vec![account]),
        (
            "2 stores, one log",
            vec![one.clone(), two.clone()],
            vec![account],
        ),
        (
            "2 stores, one log per caller",
            vec![one.clone(), two.clone()],
            accounts.clone(),
        ),
    ];
    for (name, stores, logs) in cases {
        let rate = measure(&stores, &logs, batch, events).await?;
        report(&format!("{name}, batch {batch}"), rate, baseline);
    }
    Ok(())
}

fn report(name: &str, rate: f64, baseline: f64) {
    println!(
        "{name:<45} {rate:>10.0} events/s  ({:.1}x baseline)",
        rate / baseline
    );
}

/// Appends `total` events split over every store's callers; answers events/s.
/// Caller `i` writes to `logs[i % logs.len()]`.
async fn measure(
    stores: &[Arc<PgStore>],
    logs: &[thetazero_core::model::AccountId],
    batch: usize,
    total: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let callers = stores.len() * CALLERS;
    let calls_each = (total / batch / callers).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..callers {
        let store = stores[i % stores.len()].clone();
        let log = logs[i % logs.len()];
        tasks.push(tokio::spawn(async move {
            for c in 0..calls_each {
                let events = (0..batch)
                    .map(|j| {
                        AuditEvent::named(log, "api_call", "host_call", format!("{i}/{c}/{j}"))
                    })
                    .collect();
                store.append_audit(events).await?;
            }
            Ok::<_, thetazero_core::store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    Ok((calls_each * callers * batch) as f64 / elapsed.as_secs_f64())
}
