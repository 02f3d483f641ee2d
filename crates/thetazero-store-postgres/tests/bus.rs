//! `PgBus` across two "replicas" (two buses, two pools, two LISTEN
//! connections) on one database: order, exactly-once delivery, and catching
//! up after the LISTEN connection is killed. Waits on events, never on time
//! alone (timeouts only bound a hang); must not reach beyond 127.0.0.1.

mod common;

use std::time::Duration;

use common::Schema;
use serde_json::json;
use thetazero_core::bus::{BusEvent, EventBus};
use thetazero_store_postgres::{BusOptions, PgBus};
use tokio::sync::broadcast;

async fn bus(schema: &Schema, poll: Duration) -> PgBus {
    PgBus::connect_config(
        schema.config(),
        BusOptions {
            poll_interval: poll,
            ..BusOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn next(rx: &mut broadcast::Receiver<BusEvent>) -> BusEvent {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a bus message within 30 s")
        .unwrap()
}

/// No safety-net polling within a test's lifetime: delivery must come from
/// NOTIFY, local publishes, or reconnect catch-up.
const NO_POLL: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_other_replica_in_order() {
    let schema = Schema::create().await;
    let a = bus(&schema, NO_POLL).await;
    let b = bus(&schema, NO_POLL).await;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let mut seqs = Vec::new();
    for i in 0..20 {
        // Alternate publishers: both replicas feed one sequence.
        let publisher = if i % 2 == 0 { &a } else { &b };
        seqs.push(publisher.publish("kill", json!({"n": i})).await.unwrap());
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>(), "gapless, in order");
    for rx in [&mut on_a, &mut on_b] {
        for (i, seq) in seqs.iter().enumerate() {
            let e = next(rx).await;
            assert_eq!(
                (e.seq, &e.topic, &e.payload),
                (*seq, &"kill".to_string(), &json!({"n": i}))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_give_every_replica_the_same_sequence() {
    let schema = Schema::create().await;
    let a = std::sync::Arc::new(bus(&schema, NO_POLL).await);
    let b = std::sync::Arc::new(bus(&schema, NO_POLL).await);
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let publisher = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            publisher.publish("t", json!(i)).await.unwrap()
        }));
    }
    let mut published = Vec::new();
    for t in tasks {
        published.push(t.await.unwrap());
    }
    published.sort();
    assert_eq!(published, (1..=40).collect::<Vec<u64>>());
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..40 {
        seen_a.push(next(&mut on_a).await);
        seen_b.push(next(&mut on_b).await);
    }
    assert_eq!(seen_a, seen_b);
    let seqs: Vec<u64> = seen_a.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_catches_up_exactly_once() {
    let schema = Schema::create().await;
    let publisher = bus(&schema, NO_POLL).await;
    let victim = bus(&schema, NO_POLL).await;
    let mut rx = victim.subscribe();

    publisher.publish("t", json!("before")).await.unwrap();
    assert_eq!(next(&mut rx).await.payload, json!("before"));

    let old_pid = wait_for_listener(&victim, None).await;
    let admin = schema.admin().await;
    // Kill the listening backend and keep publishing while it is gone.
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&old_pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    for i in 0..10 {
        publisher.publish("t", json!(i)).await.unwrap();
    }
    let new_pid = wait_for_listener(&victim, Some(old_pid)).await;
    assert_ne!(new_pid, old_pid);
    for i in 0..10 {
        let e = next(&mut rx).await;
        assert_eq!((e.seq, e.payload), (i as u64 + 2, json!(i)));
    }
    // Nothing was delivered twice: the next message is the next one.
    publisher.publish("t", json!("after")).await.unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.seq, e.payload), (12, json!("after")));
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_net_poll_delivers_without_notify() {
    let schema = Schema::create().await;
    let reader = bus(&schema, Duration::from_millis(50)).await;
    let mut rx = reader.subscribe();
    // A row written without NOTIFY (as if the notification were lost) still
    // arrives, from the periodic read.
    let admin = schema.admin().await;
    admin
        .batch_execute(
            "BEGIN;
             UPDATE bus_head SET seq = seq + 1;
             INSERT INTO bus_events (seq, topic, payload) SELECT seq, 'quiet', '1' FROM bus_head;
             COMMIT;",
        )
        .await
        .unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.seq, e.topic.as_str(), e.payload), (1, "quiet", json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_old_rows() {
    let schema = Schema::create().await;
    // No automatic pruning, which would race the explicit call below.
    let bus = PgBus::connect_config(
        schema.config(),
        BusOptions {
            poll_interval: NO_POLL,
            retention: None,
            ..BusOptions::default()
        },
    )
    .await
    .unwrap();
    bus.publish("t", json!(1)).await.unwrap();
    bus.publish("t", json!(2)).await.unwrap();
    let admin = schema.admin().await;
    admin
        .batch_execute("UPDATE bus_events SET created_at = now() - interval '2 days' WHERE seq = 1")
        .await
        .unwrap();
    assert_eq!(bus.prune(Duration::from_secs(24 * 3600)).await.unwrap(), 1);
    let left: Vec<i64> = admin
        .query("SELECT seq FROM bus_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec![2]);
    // Pruning never rewinds the sequence.
    assert_eq!(bus.publish("t", json!(3)).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_for_a_while_misses_nothing() {
    let schema = Schema::create().await;
    let proxy = common::Proxy::start().await;
    let publisher = bus(&schema, NO_POLL).await;
    let victim = PgBus::connect_config(
        proxy.route(schema.config()),
        BusOptions {
            poll_interval: NO_POLL,
            max_backoff: Duration::from_millis(200),
            pool: thetazero_store_postgres::PgOptions {
                max_connections: 2,
                connect_timeout: Duration::from_millis(500),
                wait_timeout: Duration::from_millis(500),
                ..thetazero_store_postgres::PgOptions::default()
            },
            ..BusOptions::default()
        },
    )
    .await
    .unwrap();
    let mut rx = victim.subscribe();
    let old_pid = wait_for_listener(&victim, None).await;
    publisher.publish("t", json!(0)).await.unwrap();
    assert_eq!(next(&mut rx).await.seq, 1);

    // The victim's network goes away: its listener cannot reconnect until
    // the proxy is restored, so everything below is published while it is
    // certainly disconnected.
    proxy.cut();
    // More than one catch-up read's worth.
    for i in 1..=600 {
        publisher.publish("t", json!(i)).await.unwrap();
    }
    assert!(rx.try_recv().is_err(), "nothing arrives while cut off");
    proxy.restore();
    wait_for_listener(&victim, Some(old_pid)).await;
    for i in 1..=600u64 {
        let e = next(&mut rx).await;
        assert_eq!((e.seq, e.payload), (i + 1, json!(i)));
    }
    publisher.publish("t", json!("after")).await.unwrap();
    assert_eq!(next(&mut rx).await.seq, 602);
    assert!(rx.try_recv().is_err());
}

/// Waits until the bus has a LISTEN connection other than `not`.
async fn wait_for_listener(bus: &PgBus, not: Option<i32>) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = bus.listener_pid() {
            if Some(pid) != not {
                return pid;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener never (re)connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
