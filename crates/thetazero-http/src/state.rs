//! What every handler can reach: the store, the runtime, the ledger and the
//! live feed, the settings, metrics, dashboard sessions and the broadcast of
//! revoked keys. Handlers get `Arc<dyn Store>` and never name a backend.

use std::sync::Arc;

use thetazero_core::model::{AccountId, KeyId};
use thetazero_core::store::Store;
use thetazero_core::Ceilings;

use thetazero_ledger::feed::AuditFeed;
use thetazero_ledger::Ledger;
use thetazero_runtime::Runtime;

use crate::metrics::Metrics;
use crate::session::Sessions;

/// Settings the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ceilings: Ceilings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest agent entry code, in bytes.
    pub max_code_bytes: usize,
    /// How often an idle audit stream gets a keepalive.
    pub stream_keepalive: std::time::Duration,
    /// How long one audit stream lasts before it says `timeout`.
    pub stream_max_duration: std::time::Duration,
    /// Executions one API key may start per minute, across replicas; 0 is
    /// no limit.
    pub executions_per_key_per_minute: u32,
    /// Executions one account may start per minute, across replicas and
    /// keys; 0 is no limit.
    pub executions_per_account_per_minute: u32,
    /// Entry-code changes per agent per hour (the evolution rate); 0 is no
    /// limit.
    pub code_updates_per_agent_per_hour: u32,
    /// Accounts the operator lets use the DEV template and `allow_localhost`
    /// (which reaches the server's own loopback services); none by default.
    pub dev_accounts: Vec<AccountId>,
    /// Forbid a key to decide permission requests made by keys it created
    /// (directly or through others); off by default, so that an owner
    /// approves its agents' requests as the spec's flow has it.
    pub approvals_forbid_ancestors: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ceilings: Ceilings::default(),
            max_body_bytes: 2 << 20,
            max_code_bytes: 512 << 10,
            stream_keepalive: std::time::Duration::from_secs(15),
            stream_max_duration: std::time::Duration::from_secs(600),
            executions_per_key_per_minute: 1200,
            executions_per_account_per_minute: 6000,
            code_updates_per_agent_per_hour: 60,
            dev_accounts: Vec::new(),
            approvals_forbid_ancestors: false,
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
