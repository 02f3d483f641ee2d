//! Schema migrations: ordered, append-only lists applied once each, safe when
//! several processes start at once. Must not hold any other schema logic.
//!
//! A migration that has shipped is never edited; a change to the schema is a
//! new file. The Store's names match the SQLite backend's so both evolve in
//! step; the bus has its own list because SQLite has no bus table.

use tokio_postgres::Client;

/// The Store's migrations, `(name, sql)` in the order they apply.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../migrations/0001_init.sql")),
    (
        "0002_executions",
        include_str!("../migrations/0002_executions.sql"),
    ),
    ("0003_merkle", include_str!("../migrations/0003_merkle.sql")),
    (
        "0004_anchors",
        include_str!("../migrations/0004_anchors.sql"),
    ),
    (
        "0005_permission_requests",
        include_str!("../migrations/0005_permission_requests.sql"),
    ),
    (
        "0007_key_lineage",
        include_str!("../migrations/0007_key_lineage.sql"),
    ),
    (
        "0008_account_ids",
        include_str!("../migrations/0008_account_ids.sql"),
    ),
    (
        "0009_pending_requests_by_agent",
        include_str!("../migrations/0009_pending_requests_by_agent.sql"),
    ),
    // PostgreSQL only: state SQLite keeps in its one process.
    (
        "shared_0001_rate_limits",
        include_str!("../migrations/shared/0001_rate_limits.sql"),
    ),
];

/// The event bus's migrations, recorded in the same `schema_migrations`.
pub const BUS_MIGRATIONS: &[(&str, &str)] = &[(
    "bus_0001_events",
    include_str!("../migrations/bus/0001_bus_events.sql"),
)];

/// First key of the two-key advisory lock that guards migrations; the second
/// is a hash of the schema, so stores in different schemas of one database do
/// not wait for each other.
const MIGRATION_LOCK_CLASS: i32 = 0x547a_4d47; // "TzMG"

/// Applies every migration of `list` not yet recorded, in one transaction
/// under a transaction-scoped advisory lock: two processes starting together
/// apply each migration once, and a failed migration leaves nothing behind.
pub(crate) async fn apply(
    client: &mut Client,
    list: &[(&str, &str)],
) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK_CLASS],
    )
    .await?;
    // Checked before creating so that a role without CREATE on the schema can
    // still start once the schema is up to date.
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                 name       TEXT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
    }
    let mut applied = 0;
    for (name, sql) in list {
        let done = tx
            .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
            .await?
            .is_some();
        if done {
            continue;
        }
        tracing::info!(migration = name, "applying migration");
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await?;
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}
