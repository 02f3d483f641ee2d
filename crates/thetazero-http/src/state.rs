//! What every handler can reach: the store, the audit recorder, settings and
//! metrics. Handlers get `Arc<dyn Store>` and never name a backend.

use std::sync::Arc;

use thetazero_core::store::Store;
use thetazero_core::Ceilings;

use thetazero_runtime::ledger::Ledger;
use thetazero_runtime::Runtime;

use crate::metrics::Metrics;

/// Settings the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ceilings: Ceilings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest single context value, in bytes of JSON.
    pub max_context_value_bytes: usize,
    /// Largest agent entry code, in bytes.
    pub max_code_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ceilings: Ceilings::default(),
            max_body_bytes: 2 << 20,
            max_context_value_bytes: 64 << 10,
            max_code_bytes: 512 << 10,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub ledger: Arc<Ledger>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        ledger: Arc<Ledger>,
        settings: Settings,
    ) -> AppState {
        AppState {
            store,
            runtime,
            ledger,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new()),
        }
    }
}
