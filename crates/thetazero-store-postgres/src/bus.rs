//! `PgBus`: the event bus across replicas, with the database as the source of
//! truth. Must not carry state of its own that the database does not have:
//! every delivered message is a committed row of `bus_events`.
//!
//! `publish` takes the next sequence number from the `bus_head` counter row,
//! inserts the message and NOTIFYs in one transaction. The counter's row lock
//! orders publishers, so sequence numbers commit in increasing order with no
//! gaps: a reader that has seen `n` has seen everything below `n`. Each bus
//! keeps one dedicated LISTEN connection; a notification (or a local publish,
//! a reconnect, or a periodic tick as a safety net) makes it read every row
//! after the last one it delivered, in order, and hand them to its local
//! subscribers. After a lost connection it reconnects with backoff and catches
//! up from the table, so nothing is lost and nothing is delivered twice.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use serde_json::Value;
use thetazero_core::bus::{BusEvent, EventBus};
use thetazero_core::store::{StoreError, StoreResult};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, Config};

use crate::connect::{self, PgOptions};
use crate::error::{map_pg, map_pool};
use crate::migrate;

/// The NOTIFY channel. Channels are per database, not per schema, so buses in
/// other schemas of the same database may wake on it; they then find nothing
/// new in their own table, which costs one query.
const CHANNEL: &str = "thetazero_bus";

/// Rows read per catch-up query.
const CATCH_UP_BATCH: i64 = 512;

#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Messages a local subscriber may fall behind by before it sees
    /// `RecvError::Lagged`.
    pub capacity: usize,
    /// How often the table is read even without a notification: the safety
    /// net should a notification be lost.
    pub poll_interval: Duration,
    /// Rows older than this are pruned now and then by the listener; `None`
    /// keeps them until `prune` is called.
    pub retention: Option<Duration>,
    /// Longest wait between reconnection attempts of the LISTEN connection.
    pub max_backoff: Duration,
    /// The publishing pool's limits.
    pub pool: PgOptions,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            capacity: 1024,
            poll_interval: Duration::from_secs(5),
            retention: Some(Duration::from_secs(24 * 3600)),
            max_backoff: Duration::from_secs(5),
            pool: PgOptions {
                max_connections: 4,
                ..PgOptions::default()
            },
        }
    }
}

struct Shared {
    config: Config,
    options: BusOptions,
    tx: broadcast::Sender<BusEvent>,
    /// Woken by local publishes, so this replica's own messages do not wait
    /// for the round trip through NOTIFY.
    wake: Notify,
    /// The LISTEN connection's backend pid, 0 while disconnected.
    listener_pid: AtomicI32,
}

pub struct PgBus {
    pool: Pool,
    shared: Arc<Shared>,
    listener: JoinHandle<()>,
}

impl PgBus {
    /// Connects with default options; messages published from now on are
    /// delivered to this bus's subscribers.
    pub async fn connect(url: &str) -> StoreResult<PgBus> {
        PgBus::connect_config(connect::parse_url(url)?, BusOptions::default()).await
    }

    pub async fn connect_config(config: Config, options: BusOptions) -> StoreResult<PgBus> {
        let config = connect::harden(config, &options.pool);
        let pool = connect::pool(config.clone(), &options.pool)?;
        let mut client = pool.get().await.map_err(map_pool)?;
        migrate::apply(&mut client, migrate::BUS_MIGRATIONS)
            .await
            .map_err(map_pg)?;
        // "From now on": start after the newest committed message.
        let last: i64 = client
            .query_one("SELECT seq FROM bus_head", &[])
            .await
            .map_err(map_pg)?
            .try_get(0)
            .map_err(map_pg)?;
        drop(client);
        let (tx, _) = broadcast::channel(options.capacity.max(1));
        let shared = Arc::new(Shared {
            config,
            options,
            tx,
            wake: Notify::new(),
            listener_pid: AtomicI32::new(0),
        });
        let listener = tokio::spawn(listen(shared.clone(), last));
        Ok(PgBus {
            pool,
            shared,
            listener,
        })
    }

    /// Deletes messages older than `older_than`; answers how many. A
    /// subscriber that was disconnected for longer than that misses them.
    pub async fn prune(&self, older_than: Duration) -> StoreResult<u64> {
        let client = self.pool.get().await.map_err(map_pool)?;
        prune_with(&client, older_than).await
    }

    /// The backend pid of the LISTEN connection, if it is connected.
    pub fn listener_pid(&self) -> Option<i32> {
        match self.shared.listener_pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }
}

impl Drop for PgBus {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

async fn prune_with(client: &Client, older_than: Duration) -> StoreResult<u64> {
    client
        .execute(
            "DELETE FROM bus_events WHERE created_at < now() - make_interval(secs => $1)",
            &[&older_than.as_secs_f64()],
        )
        .await
        .map_err(map_pg)
}

#[async_trait]
impl EventBus for PgBus {
    async fn publish(&self, topic: &str, payload: Value) -> StoreResult<u64> {
        let mut client = self.pool.get().await.map_err(map_pool)?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // The row lock on the counter is held until commit: the next publisher
        // waits here, so seq n+1 cannot commit before seq n.
        let stmt = tx
            .prepare_cached("UPDATE bus_head SET seq = seq + 1 RETURNING seq")
            .await
            .map_err(map_pg)?;
        let seq: i64 = tx
            .query_one(&stmt, &[])
            .await
            .map_err(map_pg)?
            .try_get(0)
            .map_err(map_pg)?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO bus_events (seq, topic, payload) VALUES ($1, $2, $3::text::jsonb)",
            )
            .await
            .map_err(map_pg)?;
        tx.execute(&stmt, &[&seq, &topic, &payload.to_string()])
            .await
            .map_err(map_pg)?;
        // Delivered to listeners only when the transaction commits.
        let stmt = tx
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(map_pg)?;
        tx.execute(&stmt, &[&CHANNEL, &seq.to_string()])
            .await
            .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        self.shared.wake.notify_one();
        u64::try_from(seq).map_err(|_| StoreError::Internal("negative bus sequence".into()))
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.shared.tx.subscribe()
    }
}

/// The listener task: one LISTEN session after another until the bus is
/// dropped. A session that was established is followed at once by the next
/// attempt; failed attempts back off exponentially.
async fn listen(shared: Arc<Shared>, mut last: i64) {
    let first_backoff = Duration::from_millis(50);
    let mut backoff = first_backoff;
    loop {
        let ended = session(&shared, &mut last).await;
        let was_up = shared.listener_pid.swap(0, Ordering::SeqCst) != 0;
        if was_up {
            backoff = first_backoff;
        }
        if let Err(e) = ended {
            if was_up {
                tracing::info!(error = %e, "event bus listener lost its connection; reconnecting");
            } else {
                tracing::warn!(error = %e, retry_in = ?backoff, "event bus listener cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(shared.options.max_backoff.max(first_backoff));
            }
        }
    }
}

/// One LISTEN connection's life, until the connection or a read on it fails.
async fn session(shared: &Shared, last: &mut i64) -> StoreResult<()> {
    let (client, mut connection) = shared
        .config
        .connect(connect::connector())
        .await
        .map_err(map_pg)?;
    // The driver hands notifications out through `poll_message`, which also
    // drives the connection; forward them to this task.
    let (notes_tx, mut notes) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if notes_tx.send(()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "event bus listener connection failed");
                    break;
                }
                None => break,
            }
        }
    });
    let _abort = AbortOnDrop(driver);

    // LISTEN before reading, so a message committed in between is either in
    // the read or announced afterwards.
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(map_pg)?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(map_pg)?
        .try_get(0)
        .map_err(map_pg)?;
    catch_up(shared, &client, last).await?;
    shared.listener_pid.store(pid, Ordering::SeqCst);

    let mut tick =
        tokio::time::interval(shared.options.poll_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            note = notes.recv() => {
                if note.is_none() {
                    tracing::info!("event bus listener disconnected; reconnecting");
                    return Ok(());
                }
                // Many notifications may be queued; one read covers them all.
                while notes.try_recv().is_ok() {}
            }
            _ = shared.wake.notified() => {}
            _ = tick.tick() => {
                if let Some(retention) = shared.options.retention {
                    let due = last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
                    if due {
                        last_prune = Some(Instant::now());
                        // A failed prune is retried next time; it must not
                        // stop delivery.
                        match prune_with(&client, retention).await {
                            Ok(n) if n > 0 => tracing::debug!(pruned = n, "pruned old bus messages"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "could not prune bus messages"),
                        }
                    }
                }
            }
        }
        catch_up(shared, &client, last).await?;
    }
}

/// Delivers every committed message after `last`, in order.
async fn catch_up(shared: &Shared, client: &Client, last: &mut i64) -> StoreResult<()> {
    loop {
        let rows = client
            .query(
                "SELECT seq, topic, payload::text FROM bus_events WHERE seq > $1
                 ORDER BY seq LIMIT $2",
                &[&*last, &CATCH_UP_BATCH],
            )
            .await
            .map_err(map_pg)?;
        let n = rows.len();
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(map_pg)?;
            let topic: String = row.try_get(1).map_err(map_pg)?;
            let raw: String = row.try_get(2).map_err(map_pg)?;
            if seq != *last + 1 {
                // Only pruning makes holes (the counter leaves none).
                tracing::warn!(
                    from = *last + 1,
                    to = seq - 1,
                    "bus messages were pruned before delivery"
                );
            }
            let payload = serde_json::from_str(&raw).unwrap_or_else(|e| {
                tracing::error!(seq, error = %e, "a stored bus payload is not JSON");
                Value::Null
            });
            *last = seq;
            // No subscriber is not an error: nobody is listening yet.
            let _ = shared.tx.send(BusEvent {
                seq: seq as u64,
                topic,
                payload,
            });
        }
        if (n as i64) < CATCH_UP_BATCH {
            return Ok(());
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
