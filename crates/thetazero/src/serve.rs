//! `thetazero serve`: configuration, first-start bootstrap, the listener and
//! graceful shutdown.
//!
//! Configuration comes from flags, then their environment variables, then the
//! config file, then defaults. Nothing is created before the listen address
//! is bound and the store is open, so a start that fails leaves nothing
//! behind; then, on an empty database, the signing key, the first account and
//! its owner key are created, and the owner key is printed once and stored
//! only as a hash.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use thetazero_anchor::{AnchorConfig, Heartbeat};
use thetazero_core::bus::{EventBus, LocalBus};
use thetazero_core::model::AccountId;
use thetazero_core::store::Store;
use thetazero_core::Ceilings;
use thetazero_http::{AppState, Settings};
use thetazero_ledger::Ledger;
use thetazero_runtime::external::ExternalScorerConfig;
use thetazero_runtime::inference::InferenceConfig;
use thetazero_runtime::rates::RateLimits;
use thetazero_runtime::sandbox::{EngineMode, ProcessConfig, SandboxConfig};
use thetazero_runtime::{Runtime, RuntimeConfig, SwarmConfig};
use thetazero_safety::SafetyConfig;
use thetazero_store_postgres::{PgBus, PgStore};
use thetazero_store_sqlite::SqliteStore;

use crate::{admin, signing};

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "THETAZERO_LISTEN")]
    pub listen: Option<String>,
    /// Address of the operator's metrics listener (`/metrics` without a
    /// key), or `off` (default 127.0.0.1:9420).
    #[arg(long, env = "THETAZERO_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Directory for the database (SQLite) and the signing key.
    #[arg(long, env = "THETAZERO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://PATH` (default: thetazero.db in the data dir)
    /// or `postgres://USER@HOST:PORT/DB` for several replicas.
    #[arg(long, env = "THETAZERO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The deployment's Ed25519 signing key (default: signing.key in the data dir).
    #[arg(long, env = "THETAZERO_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// On first start, also write the owner key to this file (mode 0600).
    #[arg(long, env = "THETAZERO_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<PathBuf>,
    /// A TOML config file; flags and environment variables override it.
    #[arg(long, env = "THETAZERO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "THETAZERO_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Base URL of an OpenAI-compatible provider for `thetazero.inference`.
    #[arg(long, env = "THETAZERO_INFERENCE_BASE_URL")]
    pub inference_base_url: Option<String>,
    /// The provider's model name.
    #[arg(long, env = "THETAZERO_INFERENCE_MODEL")]
    pub inference_model: Option<String>,
    /// The provider's API key; held by the server, never visible to agents.
    #[arg(long, env = "THETAZERO_INFERENCE_API_KEY", hide_env_values = true)]
    pub inference_api_key: Option<String>,
    /// Where agent code runs: `process` (worker processes the kernel
    /// confines; the default) or `in_process` (development and benchmarks).
    #[arg(long, env = "THETAZERO_SANDBOX_MODE")]
    pub sandbox_mode: Option<String>,
}

/// The config file's shape. Unknown keys are errors, not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    /// The operator's metrics listener, or "off" (default 127.0.0.1:9420).
    pub metrics_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub signing_key_file: Option<PathBuf>,
    pub log_format: Option<String>,
    /// The deployment's name, used as the signing key's name.
    pub deployment_name: Option<String>,
    pub ceilings: Option<Ceilings>,
    pub max_body_bytes: Option<usize>,
    /// How often logs that grew get a new signed checkpoint (default 2000).
    pub checkpoint_interval_ms: Option<u64>,
    /// Where checkpoints are anchored: `{kind = "none"}` (default),
    /// `{kind = "witness", url, key}` or `{kind = "command", program, args}`.
    pub anchor: Option<AnchorConfig>,
    /// How often an unchanged checkpoint is anchored again (default 300000).
    pub anchor_interval_ms: Option<u64>,
    pub safety: Option<SafetyFile>,
    pub inference: Option<InferenceFile>,
    /// How often an idle audit stream gets a keepalive (default 15000).
    pub stream_keepalive_ms: Option<u64>,
    /// How long one audit stream lasts before `timeout` (default 600000).
    pub stream_max_duration_ms: Option<u64>,
    /// Sandbox worker threads (default max(8, 4 x cores)); executions waiting
    /// on the network or on inference hold their worker.
    pub sandbox_workers: Option<usize>,
    /// Executions waiting for a worker before new ones get 503 (default 256).
    pub sandbox_queue: Option<usize>,
    /// `process` (default) or `in_process`.
    pub sandbox_mode: Option<String>,
    /// Accounts whose agents may use the DEV template and `allow_localhost`
    /// (which reaches this server's own loopback services); none by default.
    pub dev_accounts: Option<Vec<i64>>,
    /// Confined mode: worker processes per account, so CPU-active runs per
    /// account (default max(1, cores - 1)).
    pub sandbox_workers_per_account: Option<usize>,
    /// Confined mode: further workers an account may use while no other
    /// account has a run in flight, retired (idle scheduling class, no new
    /// runs) as soon as one has (default cores - sandbox_workers_per_account).
    pub sandbox_spare_workers_per_account: Option<usize>,
    /// Confined mode: runs in flight (running or waiting) before new ones get
    /// 503 (default 20000).
    pub sandbox_max_runs: Option<usize>,
    /// Confined mode: one account's runs in flight (default 2000).
    pub sandbox_max_runs_per_account: Option<usize>,
    /// Confined mode: resident memory of the server and its workers
    /// together, in MiB (default 75% of RAM); near it new runs get 503, past
    /// it the largest worker is ended.
    pub sandbox_memory_budget_mb: Option<u64>,
    /// After SIGTERM: how long runs in flight may finish before they are
    /// ended (default 8000, so drain, forced end and exit fit in a container
    /// runtime's default 10 s).
    pub shutdown_grace_ms: Option<u64>,
    pub rate_limits: Option<RateLimitsFile>,
    /// Per-account quotas.
    pub quotas: Option<QuotasFile>,
    /// How long a client may take to send a whole request head before it is
    /// disconnected (default 10000).
    pub header_read_timeout_ms: Option<u64>,
    /// Forbid a key to decide permission requests made by keys it created
    /// (default false: an owner approves its agents' requests).
    pub approvals_forbid_ancestors: Option<bool>,
}

/// `[quotas]`: per-account bounds (0 turns one off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasFile {
    /// Bytes of context all of an account's agents keep (default 64 MiB).
    pub context_bytes_per_account: Option<u64>,
    /// Bytes of account storage (default 256 MiB).
    pub storage_bytes_per_account: Option<u64>,
    /// Executions of one account running at once (default 2000).
    pub concurrent_runs_per_account: Option<u64>,
    /// Permission requests one run may leave pending (default 16).
    pub pending_requests_per_run: Option<u64>,
    /// Permission requests pending for one agent (default 100).
    pub pending_requests_per_agent: Option<u64>,
}

/// `[rate_limits]`: limits counted across every replica (0 turns one off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// Executions one API key may start per minute (default 1200).
    pub executions_per_key_per_minute: Option<u32>,
    /// Executions one account may start per minute, whatever key starts
    /// them (default 6000).
    pub executions_per_account_per_minute: Option<u32>,
    /// Entry-code changes per agent per hour, the evolution rate (default 60).
    pub code_updates_per_agent_per_hour: Option<u32>,
    /// Executions agents start through `thetazero.call_agent`, per account
    /// per hour (default 10, the spec's).
    pub swarm_executions_per_account_per_hour: Option<u32>,
    /// How deep such executions may nest (default 3).
    pub swarm_max_depth: Option<u32>,
}

/// `[safety]`: content-safety thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyFile {
    pub injection_threshold: Option<f32>,
    pub toxicity_threshold: Option<f32>,
    /// The operator's own classifier (`POST {"text"}` answered with
    /// `{"injection", "toxicity"}`), off unless set. Its key, if any, comes
    /// from THETAZERO_SAFETY_EXTERNAL_API_KEY.
    pub external_url: Option<String>,
    pub external_timeout_ms: Option<u64>,
    /// Consult it when a local score reaches this fraction of its threshold.
    pub external_borderline: Option<f32>,
    /// Block when the classifier fails, instead of keeping the local verdict.
    pub external_fail_closed: Option<bool>,
}

/// `[inference]`: the provider (flags and environment take precedence).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceFile {
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub max_tokens_per_run: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// Speak HTTP/2 to an `http://` provider (h2c with prior knowledge).
    pub http2: Option<bool>,
}

/// Everything resolved.
#[derive(Debug)]
pub struct Config {
    pub listen: String,
    /// The metrics listener's address (`None`: off), and whether the
    /// operator chose it (a default address that is taken is skipped with a
    /// warning; a chosen one that cannot be bound stops the start).
    pub metrics_listen: Option<String>,
    pub metrics_listen_chosen: bool,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub signing_key_file: PathBuf,
    pub log_format: String,
    pub deployment_name: String,
    pub checkpoint_interval: std::time::Duration,
    pub anchor: AnchorConfig,
    pub anchor_interval: std::time::Duration,
    pub safety: SafetyConfig,
    pub external_scorer: Option<ExternalScorerConfig>,
    pub inference: Option<InferenceConfig>,
    pub sandbox: SandboxConfig,
    pub swarm: SwarmConfig,
    /// The operator's ceilings on every run's limits.
    pub ceilings: Ceilings,
    /// Accounts allowed the DEV template and `allow_localhost`.
    pub dev_accounts: Vec<AccountId>,
    pub rates: RateLimits,
    pub approvals_forbid_ancestors: bool,
    pub settings: Settings,
    pub shutdown_grace: std::time::Duration,
    pub quotas: thetazero_runtime::quotas::Quotas,
    pub header_read_timeout: std::time::Duration,
}

impl Config {
    pub(crate) fn resolve(args: &ServeArgs) -> Result<Config> {
        let mut file: FileConfig = match &args.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config file {} is invalid", path.display()))?
            }
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./thetazero-data"));
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("thetazero.db").display()));
        let signing_key_file = args
            .signing_key_file
            .clone()
            .or(file.signing_key_file)
            .unwrap_or_else(|| data_dir.join("signing.key"));
        let mut settings = Settings::default();
        let ceilings = file.ceilings.unwrap_or_default();
        if let Some(b) = file.max_body_bytes {
            settings.max_body_bytes = b;
        }
        let dev_accounts: Vec<AccountId> = file
            .dev_accounts
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(AccountId::new)
            .collect();
        let approvals_forbid_ancestors = file.approvals_forbid_ancestors.unwrap_or(false);
        let mut swarm = SwarmConfig::default();
        let mut rates = RateLimits::default();
        if let Some(r) = file.rate_limits.take() {
            if let Some(n) = r.swarm_executions_per_account_per_hour {
                swarm.executions_per_account_per_hour = n;
            }
            if let Some(n) = r.swarm_max_depth {
                if !(1..=16).contains(&n) {
                    bail!("swarm_max_depth is between 1 and 16, not {n}");
                }
                swarm.max_depth = n;
            }
            if let Some(n) = r.executions_per_key_per_minute {
                rates.executions_per_key_per_minute = n;
            }
            if let Some(n) = r.executions_per_account_per_minute {
                rates.executions_per_account_per_minute = n;
            }
            if let Some(n) = r.code_updates_per_agent_per_hour {
                rates.code_updates_per_agent_per_hour = n;
            }
        }
        if let Some(ms) = file.stream_keepalive_ms {
            settings.stream_keepalive = std::time::Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = file.stream_max_duration_ms {
            settings.stream_max_duration = std::time::Duration::from_millis(ms.max(10));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mode = args
            .sandbox_mode
            .clone()
            .or(file.sandbox_mode.take())
            .unwrap_or_else(|| "process".into());
        let mode = match mode.as_str() {
            "process" => {
                let program = std::env::current_exe()
                    .context("locating this binary to start sandbox workers")?;
                let mut p = ProcessConfig::new(program, vec!["sandbox-worker".into()]);
                // The server's runtime carries the workers' channels and the
                // runs' supervisors: no hop between runtimes per run.
                p.runtime = tokio::runtime::Handle::try_current().ok();
                if let Some(n) = file.sandbox_workers_per_account {
                    if !(1..=256).contains(&n) {
                        bail!("sandbox_workers_per_account is between 1 and 256, not {n}");
                    }
                    p.workers_per_account = n;
                }
                if let Some(n) = file.sandbox_spare_workers_per_account {
                    if n > 256 {
                        bail!("sandbox_spare_workers_per_account is between 0 and 256, not {n}");
                    }
                    p.spare_workers_per_account = Some(n);
                }
                p.max_runs = file.sandbox_max_runs.unwrap_or(20_000);
                if !(1..=1_000_000).contains(&p.max_runs) {
                    bail!(
                        "sandbox_max_runs is between 1 and 1000000, not {}",
                        p.max_runs
                    );
                }
                p.max_runs_per_account = file.sandbox_max_runs_per_account.unwrap_or(2_000);
                if p.max_runs_per_account == 0 {
                    bail!("sandbox_max_runs_per_account is at least 1");
                }
                if let Some(mb) = file.sandbox_memory_budget_mb {
                    if mb < 64 {
                        bail!("sandbox_memory_budget_mb is at least 64, not {mb}");
                    }
                    p.memory_budget_bytes = mb << 20;
                }
                EngineMode::Process(p)
            }
            "in_process" => EngineMode::InProcess,
            other => bail!("sandbox_mode is \"process\" or \"in_process\", not {other:?}"),
        };
        let sandbox = SandboxConfig {
            workers: file.sandbox_workers.unwrap_or((4 * cores).max(8)),
            queue_capacity: file.sandbox_queue.unwrap_or(256),
            mode,
            ..SandboxConfig::default()
        };
        if !(1..=4096).contains(&sandbox.workers) {
            bail!(
                "sandbox_workers is between 1 and 4096, not {}",
                sandbox.workers
            );
        }
        if sandbox.queue_capacity > 1_000_000 {
            bail!(
                "sandbox_queue is at most 1000000, not {}",
                sandbox.queue_capacity
            );
        }
        let mut quotas = thetazero_runtime::quotas::Quotas::default();
        if let Some(q) = file.quotas.take() {
            let set = |slot: &mut u64, v: Option<u64>| {
                if let Some(v) = v {
                    *slot = v;
                }
            };
            set(
                &mut quotas.context_bytes_per_account,
                q.context_bytes_per_account,
            );
            set(
                &mut quotas.storage_bytes_per_account,
                q.storage_bytes_per_account,
            );
            set(
                &mut quotas.concurrent_runs_per_account,
                q.concurrent_runs_per_account,
            );
            set(
                &mut quotas.pending_requests_per_run,
                q.pending_requests_per_run,
            );
            set(
                &mut quotas.pending_requests_per_agent,
                q.pending_requests_per_agent,
            );
        }
        let header_ms = file.header_read_timeout_ms.unwrap_or(10_000);
        if !(100..=600_000).contains(&header_ms) {
            bail!("header_read_timeout_ms is between 100 and 600000, not {header_ms}");
        }
        let chosen = args.metrics_listen.clone().or(file.metrics_listen.take());
        let metrics_listen_chosen = chosen.is_some();
        let metrics_listen = match chosen.as_deref() {
            None => Some(DEFAULT_METRICS_LISTEN.to_string()),
            Some("off") | Some("") => None,
            Some(a) => Some(a.to_string()),
        };
        Ok(Config {
            metrics_listen,
            metrics_listen_chosen,
            sandbox,
            swarm,
            quotas,
            ceilings,
            dev_accounts,
            rates,
            approvals_forbid_ancestors,
            header_read_timeout: std::time::Duration::from_millis(header_ms),
            shutdown_grace: std::time::Duration::from_millis(
                file.shutdown_grace_ms.unwrap_or(8000).min(3_600_000),
            ),
            listen: args
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8420".into()),
            data_dir,
            database_url,
            signing_key_file,
            log_format: args
                .log_format
                .clone()
                .or(file.log_format)
                .unwrap_or_else(|| "text".into()),
            deployment_name: file.deployment_name.unwrap_or_else(|| "thetazero".into()),
            checkpoint_interval: std::time::Duration::from_millis(
                file.checkpoint_interval_ms.unwrap_or(2000).max(100),
            ),
            external_scorer: file
                .safety
                .as_ref()
                .and_then(|f| f.external_url.clone())
                .map(|url| ExternalScorerConfig {
                    url,
                    api_key: std::env::var("THETAZERO_SAFETY_EXTERNAL_API_KEY").ok(),
                    timeout: std::time::Duration::from_millis(
                        file.safety
                            .as_ref()
                            .and_then(|f| f.external_timeout_ms)
                            .unwrap_or(2000),
                    ),
                }),
            safety: {
                let mut safety = SafetyConfig::default();
                let f = file.safety.take().unwrap_or_default();
                if let Some(b) = f.external_borderline {
                    safety.external_borderline = b;
                }
                if let Some(c) = f.external_fail_closed {
                    safety.external_fail_closed = c;
                }
                for (value, slot) in [
                    (f.injection_threshold, &mut safety.injection_threshold),
                    (f.toxicity_threshold, &mut safety.toxicity_threshold),
                ] {
                    if let Some(v) = value {
                        if !(0.0..=1.0).contains(&v) {
                            bail!("safety thresholds are between 0 and 1, not {v}");
                        }
                        *slot = v;
                    }
                }
                safety
            },
            inference: {
                let f = file.inference.unwrap_or_default();
                let base = args.inference_base_url.clone().or(f.base_url);
                let model = args.inference_model.clone().or(f.model);
                match (base, model) {
                    (Some(base), Some(model)) => {
                        let mut c = InferenceConfig::new(&base, &model, args.inference_api_key.clone());
                        if let Some(t) = f.max_tokens_per_run {
                            c.max_tokens_per_run = t;
                        }
                        if let Some(ms) = f.timeout_ms {
                            c.timeout = std::time::Duration::from_millis(ms);
                        }
                        c.http2_prior_knowledge = f.http2.unwrap_or(false);
                        Some(c)
                    }
                    (None, None) => None,
                    _ => bail!("inference needs both a base URL and a model (THETAZERO_INFERENCE_BASE_URL, THETAZERO_INFERENCE_MODEL)"),
                }
            },
            anchor: file.anchor.unwrap_or_default(),
            anchor_interval: std::time::Duration::from_millis(
                file.anchor_interval_ms.unwrap_or(300_000).max(1000),
            ),
            settings,
        })
    }
}

/// Where the operator's metrics listener goes unless configured.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9420";

fn init_logging(format: &str) -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("THETAZERO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file, a pipe or a journal
    // gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => bail!("unknown log format {other:?}; expected text or json"),
    };
    // A second init (tests running several servers in one process) is harmless.
    drop(result);
    Ok(())
}

/// Opens the store the URL names, and the bus that goes with it. The one
/// place a backend is chosen.
async fn open_store(url: &str) -> Result<(Arc<dyn Store>, Arc<dyn EventBus>)> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let store = SqliteStore::open(Path::new(path))
            .with_context(|| format!("opening SQLite database {path}"))?;
        // One process owns an SQLite database: the bus stays in process.
        return Ok((Arc::new(store), Arc::new(LocalBus::new(1024))));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        let bus = PgBus::connect(url)
            .await
            .context("connecting the event bus to PostgreSQL")?;
        return Ok((Arc::new(store), Arc::new(bus)));
    }
    bail!("unsupported database URL; expected sqlite://PATH or postgres://...")
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating data directory {}", path.display()))?;
    }
    Ok(())
}

/// Binds the operator's metrics listener, if any. A default address that
/// is taken (another server on this machine) is skipped with a warning.
async fn bind_metrics(config: &Config) -> Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = &config.metrics_listen else {
        return Ok(None);
    };
    let parsed: SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid metrics_listen address {addr:?}"))?;
    match tokio::net::TcpListener::bind(parsed).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !config.metrics_listen_chosen => {
            tracing::warn!(address = %parsed, error = %e, "the default metrics address is taken; serving no metrics listener (set metrics_listen)");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen for metrics on {parsed}")),
    }
}

/// An error the server already wrote to its log as JSON; `main` prints
/// nothing more, so that a JSON log stays JSON to its last line.
#[derive(Debug)]
pub struct Logged;

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server stopped (see the log)")
    }
}

impl std::error::Error for Logged {}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = Config::resolve(&args)?;
    init_logging(&config.log_format)?;
    let json_logs = config.log_format == "json";
    match serve(args, config).await {
        Err(e) if json_logs => {
            tracing::error!(error = format!("{e:#}"), "the server stopped");
            Err(Logged.into())
        }
        other => other,
    }
}

async fn serve(args: ServeArgs, mut config: Config) -> Result<()> {
    let json_logs = config.log_format == "json";
    thetazero_core::telemetry::configure(config.ceilings.cpu_time_ms);
    let metrics_listener = bind_metrics(&config).await?;
    if let Some(l) = &metrics_listener {
        // Agents' requests never reach it, not even DEV's allow_localhost.
        config.sandbox.network.reserved.push(l.local_addr()?);
    }
    // Before anything is created: the confined engine refuses to start when
    // the kernel will not confine its workers, naming the missing part.
    match &config.sandbox.mode {
        EngineMode::Process(p) => {
            let probe = p
                .check()
                .context("the sandbox's worker confinement is not available")?;
            if let Some(c) = &probe.confinement {
                tracing::info!(
                    landlock = %c.landlock,
                    seccomp = c.seccomp,
                    no_new_privs = c.no_new_privs,
                    "sandbox workers confined by the kernel (tee_mode process_sandbox)"
                );
            }
        }
        EngineMode::InProcess => tracing::warn!(
            "sandbox_mode = in_process: agent code runs on the server's own threads, isolated by the engine alone (tee_mode in_process); for development only"
        ),
    }
    // Ceilings bind template defaults too: say so where one is clipped.
    for (template, clipped) in clipped_templates(&config) {
        tracing::warn!(
            template = template.name(),
            memory_mb = clipped.memory_mb,
            cpu_time_ms = clipped.cpu_time_ms,
            max_api_calls_per_run = clipped.max_api_calls_per_run,
            max_api_calls_per_minute = clipped.max_api_calls_per_minute,
            "the ceilings clip this template's defaults: its runs get these limits"
        );
    }
    // Bind first: a start that cannot listen creates nothing.
    let listener = bind(&config.listen)?;
    create_private_dir(&config.data_dir)?;
    // One process owns an SQLite store; `keys recover` takes the same lock.
    let _lock = match admin::sqlite_path(&config.database_url) {
        Some(db) => Some(admin::try_lock_store(&db)?.ok_or_else(|| {
            anyhow::anyhow!(
                "another thetazero process holds the database {} (a server, or `keys recover`)",
                db.display()
            )
        })?),
        None => None,
    };
    let (store, bus) = open_store(&config.database_url).await?;

    let (deployment_key, created) =
        signing::load_or_create(&config.signing_key_file, &config.deployment_name)?;
    if created {
        tracing::info!(path = %config.signing_key_file.display(), "created the deployment signing key");
    }
    tracing::info!(verifier_key = %deployment_key.verifier, "audit verifier key");

    // Only now, with the address bound and the store open: the first account
    // and its owner key.
    let generated = thetazero_runtime::keys::generate_key();
    let bootstrap = store
        .bootstrap(
            "default",
            // The account id is filled in by the store.
            generated.owner(AccountId::new(0), "owner"),
        )
        .await?;
    match bootstrap {
        Some(b) => {
            if json_logs {
                println!("{}", serde_json::json!({"owner_api_key": generated.secret}));
            } else {
                println!("owner API key: {}", generated.secret);
            }
            tracing::info!(
                account_id = b.account.id.get(),
                "created the first account and its owner key"
            );
            if let Some(path) = &args.bootstrap_key_file {
                signing::write_private(path, &format!("{}\n", generated.secret))
                    .with_context(|| format!("writing bootstrap key file {}", path.display()))?;
            }
        }
        None => {
            if args.bootstrap_key_file.is_some() {
                tracing::info!("the database already has an account; no bootstrap key was written");
            }
        }
    }
    let runtime = Runtime::new(
        store.clone(),
        RuntimeConfig {
            safety: config.safety.clone(),
            inference: config.inference.clone(),
            bus: Some(bus),
            external_scorer: config.external_scorer.clone(),
            sandbox: config.sandbox.clone(),
            swarm: config.swarm,
            dev_accounts: config.dev_accounts.clone(),
            ceilings: config.ceilings,
            quotas: config.quotas,
            rates: config.rates,
            approvals_forbid_ancestors: config.approvals_forbid_ancestors,
            ..RuntimeConfig::default()
        },
    )
    .context("starting the sandbox")?;
    let anchor = thetazero_anchor::build(&config.anchor).context("configuring the anchor")?;
    let anchoring = anchor.confirms();
    let ledger = Arc::new(
        Ledger::new(
            store.clone(),
            &deployment_key.secret,
            &config.deployment_name,
        )
        .context("loading the audit signing key")?
        .with_anchor(anchor),
    );
    spawn_checkpointer(ledger.clone(), config.checkpoint_interval);
    if anchoring {
        spawn_anchor_heartbeat(ledger.clone(), config.anchor_interval);
    }
    let runtime = Arc::new(runtime);
    // The operator's local channel (`keys recover`); serving does not depend
    // on it.
    let admin_socket = match admin::listen(&config.data_dir, store.clone()).await {
        Ok(path) => path,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no admin socket: `keys recover` needs the server stopped");
            None
        }
    };
    let state = AppState::new(store, runtime.clone(), ledger, config.settings);
    if let Some(listener) = metrics_listener {
        let local = listener.local_addr()?;
        tracing::info!(address = %local, "metrics listening");
        if !json_logs {
            eprintln!("thetazero metrics on http://{local}/metrics");
        }
        let app = thetazero_http::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app.into_make_service()).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let app = thetazero_http::router(state);
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "listening");
    if !json_logs {
        // The line people and scripts read; JSON logs carry it above.
        eprintln!("thetazero listening on http://{local}");
    }
    // A make-service clones the router per connection (cheap: reference
    // counted); serving the `Router` itself rebuilds its route table for
    // every connection, about 18 KB each, held as long as the connection.
    let grace = config.shutdown_grace;
    let draining = runtime.clone();
    let stopping = async move {
        shutdown_signal().await;
        // No new runs from here on; runs in flight get the grace period,
        // then are ended (and recorded as killed) so the process can exit.
        draining.stop_admitting();
        let in_flight = draining.running().count();
        tracing::info!(
            in_flight,
            grace_ms = grace.as_millis() as u64,
            "draining runs"
        );
        let ender = draining.clone();
        tokio::spawn(async move {
            if !drain_with_progress(&ender, grace).await {
                let ended = ender.running().cancel_all();
                tracing::warn!(
                    ended = ended.len(),
                    "grace period over: ending the runs still in flight"
                );
            }
        });
    };
    let serving = serve_http(listener, app, config.header_read_timeout, stopping);
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        // A request that outlives the grace period and the forced end (a
        // slow client reading a response) does not keep the process alive.
        _ = async {
            runtime.stopping().await;
            tokio::time::sleep(grace + std::time::Duration::from_millis(1500)).await;
        } => tracing::warn!("requests still open after the grace period; exiting"),
    }
    if let Some(path) = admin_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped; every acknowledged write was committed before its response");
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` until
/// `stopping` ends, then lets the connections in flight finish. A client
/// that has not sent a whole request head within `header_read_timeout` is
/// disconnected, so half-sent requests cannot hold connections open.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    stopping: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stopping);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The templates whose defaults the configured ceilings clip, with the
/// limits their runs get.
pub(crate) fn clipped_templates(
    config: &Config,
) -> Vec<(
    thetazero_core::limits::Template,
    thetazero_core::limits::Limits,
)> {
    [
        thetazero_core::limits::Template::Standard,
        thetazero_core::limits::Template::Strict,
        thetazero_core::limits::Template::Dev,
    ]
    .into_iter()
    .filter_map(|template| {
        let defaults = template.defaults();
        let clipped = config.ceilings.clip(defaults);
        (clipped != defaults).then_some((template, clipped))
    })
    .collect()
}

/// Parses and binds the listen address, with a deep accept queue: thousands
/// of clients may connect at once (runs that wait hold their connection), and
/// the default of 1024 drops the rest of a burst. The kernel caps it at
/// net.core.somaxconn.
fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("invalid listen address {listen:?}"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(|| format!("cannot listen on {addr}"))?;
    socket
        .set_reuseaddr(true)
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket
        .listen(8192)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Opens the store and the ledger exactly as `serve` does, for commands that
/// work on a store no server holds (`keys recover`).
pub(crate) async fn open_offline(config: &Config) -> Result<(Arc<dyn Store>, Ledger)> {
    if !config.signing_key_file.exists() {
        bail!(
            "no signing key at {}: has a server ever started on this data directory?",
            config.signing_key_file.display()
        );
    }
    let (store, _bus) = open_store(&config.database_url).await?;
    let (deployment_key, _) =
        signing::load_or_create(&config.signing_key_file, &config.deployment_name)?;
    let ledger = Ledger::new(
        store.clone(),
        &deployment_key.secret,
        &config.deployment_name,
    )
    .context("loading the audit signing key")?;
    Ok((store, ledger))
}

/// Waits for the runs in flight to end, at most `grace`, logging every
/// second how many are left and how long they still have; answers whether
/// they all ended.
async fn drain_with_progress(runtime: &Runtime, grace: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let step = left.min(std::time::Duration::from_secs(1));
        if runtime.drained(step).await {
            tracing::info!("drained: every run in flight ended");
            return true;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        tracing::info!(
            runs_left = runtime.running().count(),
            seconds_left = left.as_secs_f64().ceil() as u64,
            "draining"
        );
    }
}

/// Signs checkpoints of every log that grew, every `interval` while there is
/// traffic; an idle deployment signs nothing new.
fn spawn_checkpointer(ledger: Arc<Ledger>, interval: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = ledger.checkpoint_all().await {
                tracing::warn!(error = %e, "signing checkpoints failed; will retry");
            }
        }
    });
}

/// Anchors the latest checkpoint of every log when it is due: new, unchanged
/// for a whole interval (so that silence is visible), or failed and past its
/// backoff.
fn spawn_anchor_heartbeat(ledger: Arc<Ledger>, interval: std::time::Duration) {
    tokio::spawn(async move {
        let heartbeat = Heartbeat::new(interval);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5).min(interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = ledger.anchor_round(&heartbeat).await {
                tracing::warn!(error = %e, "anchoring round failed; will retry");
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
