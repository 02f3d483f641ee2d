//! How driver and pool errors become `StoreError`s, matching the SQLite
//! backend's meanings. Must not decide anything else about a failure.

use deadpool_postgres::PoolError;
use thetazero_core::store::StoreError;
use tokio_postgres::error::SqlState;

/// Unique and other integrity violations are conflicts (as SQLite's
/// constraint errors are); anything that says the database cannot serve right
/// now is `Unavailable`, which callers may retry; the rest is `Internal`.
pub(crate) fn map_pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        let class = &code.code()[..2.min(code.code().len())];
        return match class {
            "23" => StoreError::Conflict(e.to_string()),
            // connection_exception, insufficient_resources, operator
            // intervention (admin shutdown, cannot connect now), and
            // serialization failures/deadlocks, which succeed on retry.
            "08" | "53" | "57" | "40" => StoreError::Unavailable(e.to_string()),
            _ if *code == SqlState::LOCK_NOT_AVAILABLE => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        };
    }
    if is_transport(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// The driver does not expose its error kinds, so a transport failure is
/// recognised by a closed connection, an I/O cause, or the connect timeout.
fn is_transport(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    let text = e.to_string();
    text.starts_with("timeout") || text.starts_with("error connecting")
}

pub(crate) fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(kind) => StoreError::Unavailable(format!(
            "no database connection available ({kind:?} timed out)"
        )),
        PoolError::Backend(e) => map_pg(e),
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Internal(other.to_string()),
    }
}
