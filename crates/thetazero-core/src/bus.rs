//! The event bus: how replicas tell each other that something happened (a
//! kill, a halt, a new audit leaf, a decided permission request).
//!
//! The bus carries notices, not truth: every message refers to state that is
//! already committed to the database, and a subscriber that falls behind or
//! reconnects re-reads the database. On SQLite (one process) the bus is
//! in-process; on PostgreSQL it spans replicas.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::store::StoreResult;

/// One message. `seq` increases strictly in publication order across the whole
/// deployment, so a subscriber can detect gaps and resume after a reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    pub seq: u64,
    pub topic: String,
    pub payload: Value,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes to every subscriber on every replica, this one included.
    /// Returns once the message is durable enough that no subscriber that
    /// stays subscribed, or resumes, will miss it.
    async fn publish(&self, topic: &str, payload: Value) -> StoreResult<u64>;

    /// Receives every message published from now on, in `seq` order. A
    /// receiver that lags past its buffer sees `RecvError::Lagged` and must
    /// resynchronise from the database.
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;
}

/// The in-process bus, for a single server on SQLite.
pub struct LocalBus {
    tx: broadcast::Sender<BusEvent>,
    seq: std::sync::Mutex<u64>,
}

impl LocalBus {
    pub fn new(capacity: usize) -> LocalBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        LocalBus {
            tx,
            seq: std::sync::Mutex::new(0),
        }
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, topic: &str, payload: Value) -> StoreResult<u64> {
        // The lock orders sequence numbers and sends together.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let event = BusEvent {
            seq: *seq,
            topic: topic.to_string(),
            payload,
        };
        // No subscribers is not an error: nobody is listening yet.
        let _ = self.tx.send(event);
        Ok(*seq)
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_to_every_subscriber() {
        let bus = LocalBus::new(16);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for i in 0..5 {
            bus.publish("t", Value::from(i)).await.unwrap();
        }
        for rx in [&mut a, &mut b] {
            for i in 0..5u64 {
                let e = rx.recv().await.unwrap();
                assert_eq!((e.seq, e.payload), (i + 1, Value::from(i)));
            }
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told() {
        let bus = LocalBus::new(2);
        let mut rx = bus.subscribe();
        for i in 0..5 {
            bus.publish("t", Value::from(i)).await.unwrap();
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
    }
}
