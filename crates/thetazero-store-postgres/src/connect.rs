//! How connections are made: the one place that picks the TLS connector, the
//! timeouts and the pool. Must not run any query of the Store or the bus.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use thetazero_core::store::{StoreError, StoreResult};
use tokio_postgres::{Config, NoTls};

/// The connector every connection uses. Plain TCP for now; TLS (for example
/// `tokio-postgres-rustls`) is chosen here and nowhere else.
pub(crate) type Connector = NoTls;

pub(crate) fn connector() -> Connector {
    NoTls
}

/// Pool size and how long a caller may wait on an unreachable database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections the pool keeps open.
    pub max_connections: usize,
    /// Longest a TCP connect plus startup may take (unless the URL sets
    /// `connect_timeout` itself).
    pub connect_timeout: Duration,
    /// Longest a caller waits for a free connection when all are busy.
    pub wait_timeout: Duration,
    /// Tasks committing audit appends side by side; each commits the appends
    /// that queued up while it was busy in one transaction.
    pub audit_writers: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(3),
            wait_timeout: Duration::from_secs(3),
            audit_writers: 4,
        }
    }
}

/// Parses a `postgres://` URL (or key-value string) into a configuration.
pub fn parse_url(url: &str) -> StoreResult<Config> {
    url.parse::<Config>()
        .map_err(|e| StoreError::Internal(format!("invalid database URL: {e}")))
}

/// Fills in the bounds that keep calls from hanging on a dead network.
pub(crate) fn harden(mut config: Config, options: &PgOptions) -> Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    // Keepalives notice an idle peer that vanished without closing the
    // socket; the user timeout fails a request whose bytes the peer never
    // acknowledges, instead of leaving the caller waiting on TCP retries for
    // many minutes. Neither limits how long a query may run.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.keepalives_interval(Duration::from_secs(5));
    config.keepalives_retries(3);
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
    // Statements are prepared once per connection and PostgreSQL may then
    // reuse one generic plan for them; a plan chosen while a table was still
    // tiny (a scan) stays until the next ANALYZE, and the audit log's hash
    // lookups grew slower with every append after a fast start. Planning for
    // the actual parameters each time costs little next to that risk.
    let options = config.get_options().unwrap_or_default().to_string();
    if !options.contains("plan_cache_mode") {
        config.options(format!("{options} -c plan_cache_mode=force_custom_plan").trim());
    }
    if config.get_application_name().is_none() {
        config.application_name("thetazero");
    }
    config
}

pub(crate) fn pool(config: Config, options: &PgOptions) -> StoreResult<Pool> {
    let manager = Manager::from_config(
        config,
        connector(),
        ManagerConfig {
            // `Fast` only checks that the connection is not closed: a broken
            // connection fails one call (as Unavailable) and is then replaced,
            // which is cheaper than a round trip on every checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.max_connections.max(1))
        .wait_timeout(Some(options.wait_timeout))
        // A little longer than the connect timeout, so that the driver's own
        // (more specific) error usually wins.
        .create_timeout(Some(options.connect_timeout + Duration::from_secs(1)))
        .recycle_timeout(Some(options.wait_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Internal(format!("could not build the pool: {e}")))
}
