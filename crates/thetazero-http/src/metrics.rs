//! Prometheus metrics, exposed at `/metrics`: the HTTP layer's own, the
//! process's counters (`thetazero_core::telemetry`), and gauges read when
//! scraped.
//!
//! Labels use the matched route template, never the raw path, so that ids in
//! URLs cannot blow up the series count; no metric is labelled by account,
//! agent or key.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    /// Read when scraped.
    runs_active: Gauge,
    sandbox_workers: Gauge,
    approvals_pending: Gauge,
    checkpoint_age: Gauge<f64, AtomicU64>,
    anchor_age: Gauge<f64, AtomicU64>,
    shutting_down: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("thetazero");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to serve an HTTP request",
            latency.clone(),
        );
        thetazero_core::telemetry::global().register(&mut registry);
        let runs_active = Gauge::default();
        let sandbox_workers = Gauge::default();
        let approvals_pending = Gauge::default();
        let checkpoint_age = Gauge::<f64, AtomicU64>::default();
        let anchor_age = Gauge::<f64, AtomicU64>::default();
        let shutting_down = Gauge::default();
        registry.register(
            "runs_active",
            "Runs in flight in this process (queued, running or waiting)",
            runs_active.clone(),
        );
        registry.register(
            "sandbox_workers",
            "Confined mode: sandbox worker processes alive",
            sandbox_workers.clone(),
        );
        registry.register(
            "approvals_pending",
            "Permission requests waiting for a human decision",
            approvals_pending.clone(),
        );
        registry.register(
            "audit_checkpoint_age_seconds",
            "Seconds since this process last signed a checkpoint (0 before the first)",
            checkpoint_age.clone(),
        );
        registry.register(
            "anchor_confirmed_age_seconds",
            "Seconds since this process's last confirmed anchoring (0 before the first)",
            anchor_age.clone(),
        );
        registry.register(
            "shutting_down",
            "1 while the server drains after SIGTERM",
            shutting_down.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            runs_active,
            sandbox_workers,
            approvals_pending,
            checkpoint_age,
            anchor_age,
            shutting_down,
        }
    }

    /// Reads the gauges that are sampled, then encodes everything.
    pub async fn render(&self, state: &AppState) -> String {
        let telemetry = thetazero_core::telemetry::global();
        self.runs_active.set(state.runtime.running().count() as i64);
        self.sandbox_workers
            .set(state.runtime.sandbox_workers() as i64);
        self.shutting_down
            .set(i64::from(state.runtime.is_stopping()));
        match state.store.pending_permission_requests_total().await {
            Ok(n) => {
                self.approvals_pending.set(n as i64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting pending approvals failed"),
        }
        if let Some(age) = telemetry.checkpoint_age() {
            self.checkpoint_age.set(age);
        }
        if let Some(age) = telemetry.anchor_age() {
            self.anchor_age.set(age);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
