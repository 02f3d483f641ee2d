//! Schema migrations: an ordered, append-only list applied once each.
//!
//! A migration that has shipped is never edited; a change to the schema is a
//! new file. Names match the PostgreSQL backend's so both evolve in step.

use rusqlite::{params, Connection};

/// `(name, sql)` in the order they apply.
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
        "0006_audit_keys",
        include_str!("../migrations/0006_audit_keys.sql"),
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
];

pub(crate) fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             name       TEXT PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
         )",
    )?;
    for (name, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        let done: i64 = tx.query_row(
            "SELECT COUNT(*) FROM schema_migrations WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        if done == 0 {
            tracing::info!(migration = name, "applying migration");
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (name) VALUES (?1)",
                params![name],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}
