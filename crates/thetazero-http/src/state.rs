//! What every handler can reach: the store, the runtime, the ledger and the
//! live feed, the settings, metrics, dashboard sessions and the broadcast of
//! revoked keys. Handlers get `Arc<dyn Store>` and never name a backend.

use std::sync::Arc;

use thetazero_core::model::KeyId;
use thetazero_core::store::Store;

use thetazero_ledger::feed::AuditFeed;
use thetazero_ledger::Ledger;
use thetazero_runtime::Runtime;

use crate::metrics::Metrics;
use crate::session::Sessions;

/// Settings the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How often an idle audit stream gets a keepalive.
    pub stream_keepalive: std::time::Duration,
    /// How long one audit stream lasts before it says `timeout`.
    pub stream_max_duration: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 2 << 20,
            stream_keepalive: std::time::Duration::from_secs(15),
            stream_max_duration: std::time::Duration::from_secs(600),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub ledger: Arc<Ledger>,
    pub feed: Arc<AuditFeed>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// Ids of keys revoked or narrowed by this replica, so that streams
    /// opened with them end at once when they may no longer read (streams on
    /// other replicas notice at their next keepalive).
    pub revoked_keys: tokio::sync::broadcast::Sender<KeyId>,
    /// The dashboard's browser sessions on this replica.
    pub sessions: Arc<Sessions>,
}

impl AppState {
    /// The key stream tokens are signed with; the same on every replica.
    pub fn stream_secret(&self) -> [u8; 32] {
        self.ledger.derive_secret("audit stream tokens")
    }

    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        ledger: Arc<Ledger>,
        settings: Settings,
    ) -> AppState {
        AppState {
            store: store.clone(),
            runtime,
            ledger,
            feed: AuditFeed::new(store.clone()),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new()),
            revoked_keys: tokio::sync::broadcast::Sender::new(64),
            sessions: Arc::new(Sessions::default()),
        }
    }
}
