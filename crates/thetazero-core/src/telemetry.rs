//! The process's operational counters: what `/metrics` reports about
//! executions, the sandbox, the store, the audit log, content safety and
//! rate limits.
//!
//! One set per process, reached through [`global`], so that the sandbox,
//! the stores and the runtime count without threading a handle through every
//! constructor. Labels are small closed sets (statuses, templates, channels,
//! layers, causes): never an account, agent, key or execution, so neither the
//! series count nor what a scrape reveals grows with tenants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutionLabels {
    pub status: &'static str,
    pub template: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TemplateLabels {
    pub template: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SafetyLabels {
    pub channel: &'static str,
    pub layer: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

/// The run-duration buckets, in seconds: from 1 ms up to the operator's
/// ceiling on `cpu_time_ms`, which no run can pass by more than the
/// watchdog's margin.
pub fn duration_buckets(ceiling_ms: u64) -> Vec<f64> {
    let ceiling = (ceiling_ms.max(1) as f64) / 1000.0;
    let mut buckets: Vec<f64> = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .filter(|b| *b < ceiling)
    .collect();
    buckets.push(ceiling);
    buckets
}

/// Builds each template's run-duration histogram with the same buckets.
#[derive(Clone, Debug)]
pub struct Buckets(std::sync::Arc<[f64]>);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

pub struct Telemetry {
    /// Executions that ended, by status and template.
    pub executions: Family<ExecutionLabels, Counter>,
    /// Executions refused before they ran, by reason.
    pub executions_refused: Family<ReasonLabels, Counter>,
    /// How long runs took, by template.
    pub execution_duration: Family<TemplateLabels, Histogram, Buckets>,
    /// Runs suspended on a host call (a provider, another agent, a human).
    pub runs_waiting: Gauge,
    /// Runs handed to the engine that it has not started yet.
    pub runs_queued: Gauge,
    /// Confined mode: worker processes started.
    pub worker_starts: Counter,
    /// Confined mode: worker processes the server ended, by cause.
    pub worker_forced_stops: Family<CauseLabels, Counter>,
    /// Time to commit one write transaction.
    pub store_commit: Histogram,
    /// Audit events appended.
    pub audit_appends: Counter,
    /// Checkpoints signed.
    pub checkpoints: Counter,
    /// Anchoring attempts by outcome.
    pub anchors: Family<StatusLabels, Counter>,
    /// Content-safety decisions, by channel, layer and decision.
    pub safety_decisions: Family<SafetyLabels, Counter>,
    /// Rate-limit refusals, by limit.
    pub rate_limit_hits: Family<LimitLabels, Counter>,
    /// Unix time (ms) of the last signed checkpoint; 0 before the first.
    last_checkpoint_ms: AtomicU64,
    /// Unix time (ms) of the last confirmed anchoring; 0 before the first.
    last_anchor_ms: AtomicU64,
}

static GLOBAL: OnceLock<Telemetry> = OnceLock::new();

/// The process's counters. The first call fixes the run-duration buckets
/// at the default ceiling unless [`configure`] ran before.
pub fn global() -> &'static Telemetry {
    GLOBAL.get_or_init(|| Telemetry::new(crate::Ceilings::default().cpu_time_ms))
}

/// Sets the run-duration buckets from the operator's ceiling; a no-op once
/// the counters exist.
pub fn configure(ceiling_ms: u64) {
    let _ = GLOBAL.set(Telemetry::new(ceiling_ms));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Telemetry {
    fn new(ceiling_ms: u64) -> Telemetry {
        let buckets = duration_buckets(ceiling_ms);
        Telemetry {
            executions: Family::default(),
            executions_refused: Family::default(),
            execution_duration: Family::new_with_constructor(Buckets(buckets.into())),
            runs_waiting: Gauge::default(),
            runs_queued: Gauge::default(),
            worker_starts: Counter::default(),
            worker_forced_stops: Family::default(),
            store_commit: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
            audit_appends: Counter::default(),
            checkpoints: Counter::default(),
            anchors: Family::default(),
            safety_decisions: Family::default(),
            rate_limit_hits: Family::default(),
            last_checkpoint_ms: AtomicU64::new(0),
            last_anchor_ms: AtomicU64::new(0),
        }
    }

    pub fn execution_ended(&self, status: &'static str, template: &'static str, seconds: f64) {
        self.executions
            .get_or_create(&ExecutionLabels { status, template })
            .inc();
        self.execution_duration
            .get_or_create(&TemplateLabels { template })
            .observe(seconds);
    }

    pub fn execution_refused(&self, reason: &'static str) {
        self.executions_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn worker_forced_stop(&self, cause: &'static str) {
        self.worker_forced_stops
            .get_or_create(&CauseLabels { cause })
            .inc();
    }

    pub fn safety_decision(&self, channel: &'static str, layer: &'static str, blocked: bool) {
        let decision = if blocked { "block" } else { "allow" };
        self.safety_decisions
            .get_or_create(&SafetyLabels {
                channel,
                layer,
                decision,
            })
            .inc();
    }

    pub fn rate_limit_hit(&self, limit: &'static str) {
        self.rate_limit_hits
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    pub fn checkpoint_signed(&self) {
        self.checkpoints.inc();
        self.last_checkpoint_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn anchored(&self, status: &'static str) {
        self.anchors.get_or_create(&StatusLabels { status }).inc();
        if status == "confirmed" {
            self.last_anchor_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Seconds since the last signed checkpoint, if there was one.
    pub fn checkpoint_age(&self) -> Option<f64> {
        age(self.last_checkpoint_ms.load(Ordering::Relaxed))
    }

    /// Seconds since the last confirmed anchoring, if there was one.
    pub fn anchor_age(&self) -> Option<f64> {
        age(self.last_anchor_ms.load(Ordering::Relaxed))
    }

    /// A queued run: counted until the engine starts it or it goes away.
    pub fn queued(&'static self) -> Queued {
        self.runs_queued.inc();
        Queued { live: true }
    }

    /// Registers every counter under `registry` (which brings the prefix).
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(
            "executions",
            "Executions that ended, by status and template",
            self.executions.clone(),
        );
        registry.register(
            "executions_refused",
            "Executions refused before they ran, by reason",
            self.executions_refused.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Run duration, by template (buckets up to the ceiling)",
            self.execution_duration.clone(),
        );
        registry.register(
            "runs_waiting",
            "Runs suspended on a host call (provider, another agent, approval)",
            self.runs_waiting.clone(),
        );
        registry.register(
            "runs_queued",
            "Runs handed to the engine and not started yet",
            self.runs_queued.clone(),
        );
        registry.register(
            "sandbox_worker_starts",
            "Sandbox worker processes started",
            self.worker_starts.clone(),
        );
        registry.register(
            "sandbox_worker_forced_stops",
            "Sandbox worker processes the server ended (deadline, kill, memory)",
            self.worker_forced_stops.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time to commit one write transaction",
            self.store_commit.clone(),
        );
        registry.register(
            "audit_appends",
            "Audit events appended",
            self.audit_appends.clone(),
        );
        registry.register(
            "audit_checkpoints",
            "Checkpoints signed",
            self.checkpoints.clone(),
        );
        registry.register(
            "anchors",
            "Anchoring attempts, by outcome",
            self.anchors.clone(),
        );
        registry.register(
            "safety_decisions",
            "Content-safety decisions, by channel, layer and decision",
            self.safety_decisions.clone(),
        );
        registry.register(
            "rate_limit_hits",
            "Requests and calls refused by a rate limit, by limit",
            self.rate_limit_hits.clone(),
        );
    }
}

fn age(at_ms: u64) -> Option<f64> {
    (at_ms > 0).then(|| now_ms().saturating_sub(at_ms) as f64 / 1000.0)
}

/// One run counted in `runs_queued` until [`Queued::started`] or drop.
pub struct Queued {
    live: bool,
}

impl Queued {
    pub fn started(&mut self) {
        if std::mem::take(&mut self.live) {
            global().runs_queued.dec();
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.started();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_buckets_end_at_the_ceiling() {
        let b = duration_buckets(300_000);
        assert_eq!(b.first(), Some(&0.001));
        assert_eq!(b.last(), Some(&300.0));
        assert_eq!(b.iter().filter(|x| **x == 300.0).count(), 1);
        let b = duration_buckets(1_500);
        assert_eq!(b.last(), Some(&1.5));
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_queued_run_counts_once() {
        let t = global();
        let before = t.runs_queued.get();
        let mut q = t.queued();
        assert_eq!(t.runs_queued.get(), before + 1);
        q.started();
        q.started();
        drop(q);
        assert_eq!(t.runs_queued.get(), before);
    }
}
