//! The live audit feed: one poller per account with subscribers, reading the
//! account's new audit records from the store and fanning them out.
//!
//! The database is the source of truth, so the feed sees what every replica
//! appends. One poller per account, not per subscriber, keeps the cost flat
//! however many streams watch the same log; it stops when its last
//! subscriber leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use thetazero_core::audit::{AuditQuery, AuditRecord};
use thetazero_core::model::AccountId;
use thetazero_core::store::Store;
use tokio::sync::broadcast;

/// How often a watched log is polled for growth.
const POLL: Duration = Duration::from_millis(20);
/// Records buffered per subscriber before it counts as lagging.
const BUFFER: usize = 4096;
const PAGE: u64 = 1000;

pub struct AuditFeed {
    store: Arc<dyn Store>,
    feeds: Mutex<HashMap<AccountId, Weak<Feed>>>,
}

/// One account's feed; dropping the last `Subscription` stops its poller.
pub struct Feed {
    tx: broadcast::Sender<Arc<AuditRecord>>,
}

pub struct Subscription {
    rx: broadcast::Receiver<Arc<AuditRecord>>,
    feed: Arc<Feed>,
}

impl Subscription {
    /// The next record appended after the subscription was made. The
    /// subscription keeps its account's poller alive while it exists.
    pub async fn recv(&mut self) -> Result<Arc<AuditRecord>, broadcast::error::RecvError> {
        let _alive = &self.feed;
        self.rx.recv().await
    }
}

impl AuditFeed {
    pub fn new(store: Arc<dyn Store>) -> Arc<AuditFeed> {
        Arc::new(AuditFeed {
            store,
            feeds: Mutex::new(HashMap::new()),
        })
    }

    /// Subscribes to every record appended to the account's log from now on.
    /// Records already in the log are the caller's to read from the store.
    pub async fn subscribe(self: &Arc<Self>, account: AccountId) -> Subscription {
        // The starting point is read before subscribing returns, so a record
        // appended after this call is always delivered.
        let start = self.store.audit_log_size(account).await.unwrap_or(0);
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(&account).and_then(Weak::upgrade) {
            return Subscription {
                rx: feed.tx.subscribe(),
                feed,
            };
        }
        let (tx, rx) = broadcast::channel(BUFFER);
        let feed = Arc::new(Feed { tx });
        feeds.insert(account, Arc::downgrade(&feed));
        let weak = Arc::downgrade(&feed);
        let store = self.store.clone();
        tokio::spawn(poll(store, account, start, weak));
        Subscription { rx, feed }
    }
}

async fn poll(store: Arc<dyn Store>, account: AccountId, mut next: u64, feed: Weak<Feed>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(feed) = feed.upgrade() else { return };
        let size = match store.audit_log_size(account).await {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(account = account.get(), error = %e, "the audit feed could not read the log");
                continue;
            }
        };
        while next < size {
            let query = AuditQuery {
                after: next.checked_sub(1),
                limit: PAGE,
                ..Default::default()
            };
            let page = match store.query_audit(account, &query).await {
                Ok(p) => p.items,
                Err(e) => {
                    tracing::warn!(account = account.get(), error = %e, "the audit feed could not read records");
                    break;
                }
            };
            if page.is_empty() {
                break;
            }
            for record in page {
                next = record.leaf_index + 1;
                // No receivers right now is fine: they may come and go.
                let _ = feed.tx.send(Arc::new(record));
            }
        }
    }
}
