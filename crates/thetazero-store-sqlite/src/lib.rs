//! The embedded SQLite implementation of `Store`.
//!
//! One writer connection serialises every write (SQLite allows one writer at a
//! time anyway, and taking the lock here rather than in SQLite avoids busy
//! retries); a small pool of reader connections serves reads concurrently under
//! WAL. All database work runs on tokio's blocking pool, never on the async
//! workers. This crate knows nothing of HTTP.

mod audit_log;
mod migrate;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::Value;
use time::OffsetDateTime;

use thetazero_core::audit::{AnchorRecord, AuditEvent, AuditQuery, AuditRecord, StoredCheckpoint};
use thetazero_core::model::{
    id_range, Account, AccountId, Agent, AgentId, AgentPatch, AgentSpec, ApiKey, AuditRecordId,
    ContextEntry, Execution, ExecutionId, ExecutionOutcome, ExecutionStatus, IdKind, KeyId,
    NewExecution, NewKey, NewPermissionRequest, Page, PageRequest, PermissionRequest,
    PermissionRequestId, PermissionRequestStatus, RequestDecision,
};
use thetazero_core::rate::{gcra, RateDecision, RateLimit};
use thetazero_core::store::{
    check_key_change, decode_agent_columns, scope_change_refusal, AccountUsage, Audit, Bootstrap,
    Store, StoreError, StoreResult,
};
use thetazero_core::KeyScope;

pub use migrate::MIGRATIONS;

const READERS: usize = 4;

pub struct SqliteStore {
    writer: writer::Writer,
    /// Execution ids are handed out here so that an execution can start
    /// before its record commits; one process owns an SQLite database.
    /// The last execution id given out, per account.
    next_execution_ids: Mutex<std::collections::HashMap<AccountId, i64>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    /// Rate-limit TATs by counter name; one process owns the database, so
    /// they live here and start afresh with the process.
    rates: Mutex<std::collections::HashMap<String, i64>>,
}

/// `Connection::execute` through the connection's statement cache. Every
/// statement the store runs goes through it or `query_row_cached`: parsing
/// the same SQL again on every execution was a visible share of its cost.
pub(crate) fn execute_cached<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

/// `Connection::query_row` through the connection's statement cache.
pub(crate) fn query_row_cached<T, P, F>(
    c: &Connection,
    sql: &str,
    params: P,
    f: F,
) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
{
    c.prepare_cached(sql)?.query_row(params, f)
}

/// Distinct statements one connection keeps prepared (more than the store
/// has, so none is evicted and parsed again).
const STATEMENT_CACHE: usize = 256;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans never depend on bound values. Without this SQLite reads a bound
    // `LIMIT ?` while planning and marks the statement to be prepared again
    // whenever that parameter is bound, which was every call: the grants
    // read of every execution was parsed and planned each time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // FULL: an acknowledged write survives power loss, not only a crash.
    // 2 KiB pages (a new database only; an existing one keeps its own): a
    // commit rewrites whole pages, and an execution's commit touches about
    // fifteen of them, so smaller pages halve the bytes each commit syncs;
    // inclusion proofs also read fewer bytes per hash (both measured in
    // BENCHMARKS.md). 1 KiB slowed batched appends and exports.
    conn.execute_batch(
        "PRAGMA page_size = 2048;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32768;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    Ok(conn)
}

/// Writes a consistent copy of the database at `db` to `out`, a new file
/// created readable by its owner only, while the database may be in use
/// (`VACUUM INTO` reads one snapshot in one read transaction, so a server
/// writing meanwhile neither blocks nor tears the copy).
pub fn backup_to(db: &Path, out: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !db.exists() {
        return Err(StoreError::Internal(format!(
            "no database at {}",
            db.display()
        )));
    }
    // An empty file made first, so the copy is never readable by others.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| StoreError::Internal(format!("creating {}: {e}", out.display())))?;
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(internal)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(internal)?;
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Internal("the backup path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", params![target])
        .map_err(internal)?;
    drop(conn);
    let copy = Connection::open_with_flags(out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(internal)?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(internal)?;
    if check != "ok" {
        return Err(StoreError::Internal(format!(
            "the copy fails its integrity check: {check}"
        )));
    }
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Internal(format!("syncing {}: {e}", out.display())))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies any
    /// migrations it has not seen.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut writer = open(path).map_err(internal)?;
        migrate::apply(&mut writer).map_err(internal)?;
        let backfilled = audit_log::backfill(&mut writer)?;
        if backfilled > 0 {
            tracing::info!(
                leaves = backfilled,
                "gave earlier audit events their leaves"
            );
        }
        // The writer never checkpoints the WAL itself: a checkpoint waits for
        // the disk, and the writer's latency is every request's latency. A
        // thread of its own does it instead.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(internal)?;
        let readers = (0..READERS)
            .map(|_| open(path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        let checkpointer = open(path).map_err(internal)?;
        let writer = writer::Writer::start(writer, checkpointer)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(SqliteStore {
            writer,
            next_execution_ids: Mutex::new(std::collections::HashMap::new()),
            readers: Arc::new(readers),
            rates: Mutex::new(std::collections::HashMap::new()),
        })
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// A lookup by key that touches a handful of pages: run on the calling
    /// thread. Handing it to another thread (`read`) cost more than the
    /// lookup itself and every execution makes several.
    fn read_point<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T>,
    {
        with_reader(&self.readers, f)
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let run = move || with_reader(&readers, f);
        // Reads are short: on a multi-threaded runtime they run in place
        // (the worker's other tasks move elsewhere meanwhile), which saves
        // the hand-off to a blocking thread and back.
        let in_place = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if in_place {
            return tokio::task::block_in_place(run);
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| StoreError::Internal(format!("database task failed: {e}")))?
    }
}

/// Runs `f` on the first idle reader; if all are busy, waits on one chosen
/// by thread so that waiters spread out.
fn with_reader<T>(
    readers: &[Mutex<Connection>],
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    for reader in readers {
        if let Ok(conn) = reader.try_lock() {
            return f(&conn);
        }
    }
    let slot = thread_slot() % readers.len();
    let conn = readers[slot].lock().unwrap_or_else(|p| p.into_inner());
    f(&conn)
}

fn thread_slot() -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() as usize
}

fn internal(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(e.to_string()),
        Some(ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

pub(crate) fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

pub(crate) fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

// ---- row mapping ----

const ACCOUNT_COLS: &str = "id, name, created_at";

fn account_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: from_micros(row.get(2)?),
    })
}

const KEY_COLS: &str =
    "id, account_id, name, prefix, scopes, is_owner, created_at, last_used_at, revoked_at, hash, created_by";

fn key_row(row: &Row<'_>) -> rusqlite::Result<(ApiKey, Vec<u8>)> {
    let scopes: String = row.get(4)?;
    Ok((
        ApiKey {
            id: row.get(0)?,
            account_id: row.get(1)?,
            name: row.get(2)?,
            prefix: row.get(3)?,
            scopes: scopes.split(' ').filter_map(KeyScope::parse).collect(),
            is_owner: row.get(5)?,
            created_at: from_micros(row.get(6)?),
            last_used_at: row.get::<_, Option<i64>>(7)?.map(from_micros),
            revoked_at: row.get::<_, Option<i64>>(8)?.map(from_micros),
            created_by: row.get(10)?,
        },
        row.get(9)?,
    ))
}

fn scopes_text(scopes: &[KeyScope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

const AGENT_COLS: &str = "id, account_id, name, version, description, status, entry_code, config, permissions, created_at, updated_at";

struct AgentRow {
    agent: Agent,
}

fn agent_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<AgentRow>> {
    let status: String = row.get(5)?;
    let config: String = row.get(7)?;
    let permissions: String = row.get(8)?;
    let (status, config, permissions) = match decode_agent_columns(&status, &config, &permissions) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(AgentRow {
        agent: Agent {
            id: row.get(0)?,
            account_id: row.get(1)?,
            name: row.get(2)?,
            version: row.get(3)?,
            description: row.get(4)?,
            status,
            entry_code: row.get(6)?,
            config,
            permissions,
            created_at: from_micros(row.get(9)?),
            updated_at: from_micros(row.get(10)?),
        },
    }))
}

fn get_agent_tx(conn: &Connection, account: AccountId, id: AgentId) -> StoreResult<Option<Agent>> {
    let row = query_row_cached(
        conn,
        &format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1 AND account_id = ?2"),
        params![id, account],
        agent_row,
    )
    .optional()
    .map_err(map_err)?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(r?.agent)),
    }
}

const EXECUTION_COLS: &str = "id, account_id, agent_id, agent_version, code_sha256, key_id, parent_execution_id, status, input, output, report, violation_count, was_terminated, duration_ms, started_at, finished_at";

fn execution_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<Execution>> {
    let status: String = row.get(7)?;
    let input: String = row.get(8)?;
    let output: Option<String> = row.get(9)?;
    let report: String = row.get(10)?;
    let parsed = (|| {
        let status = ExecutionStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("execution status"))?;
        let input: Value =
            serde_json::from_str(&input).map_err(|_| StoreError::corrupt("execution input"))?;
        let output: Option<Value> = output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|_| StoreError::corrupt("execution output"))?;
        let report: Value =
            serde_json::from_str(&report).map_err(|_| StoreError::corrupt("execution report"))?;
        Ok((status, input, output, report))
    })();
    let (status, input, output, report) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Execution {
        id: row.get(0)?,
        account_id: row.get(1)?,
        agent_id: row.get(2)?,
        agent_version: row.get(3)?,
        code_sha256: row.get(4)?,
        key_id: row.get(5)?,
        parent_execution_id: row.get(6)?,
        status,
        input,
        output,
        report,
        violation_count: row.get::<_, i64>(11)? as u64,
        was_terminated: row.get(12)?,
        duration_ms: row.get::<_, i64>(13)? as u64,
        started_at: from_micros(row.get(14)?),
        finished_at: row.get::<_, Option<i64>>(15)?.map(from_micros),
    }))
}

fn get_execution_tx(
    conn: &Connection,
    account: AccountId,
    id: ExecutionId,
) -> StoreResult<Option<Execution>> {
    let row = query_row_cached(
        conn,
        &format!("SELECT {EXECUTION_COLS} FROM executions WHERE id = ?1 AND account_id = ?2"),
        params![id, account],
        execution_row,
    )
    .optional()
    .map_err(map_err)?;
    row.transpose()
}

const AUDIT_COLS: &str = "e.id, e.account_id, e.leaf_index, e.timestamp, e.agent_id, e.execution_id, e.key_id, e.action_type, e.action_category, e.description, e.permission_state, e.is_violation, e.input_summary, e.output_summary, l.leaf_hash";
/// Events with their leaves (keyed as `audit_log` keys them: the 40 is its
/// `INDEX_BITS`, fixed by migration `0006_audit_keys`).
const AUDIT_FROM: &str =
    "audit_events e JOIN audit_leaves l ON l.leaf_key = (e.account_id << 40) | e.leaf_index";

fn audit_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let leaf_hash: Vec<u8> = row.get(14)?;
    let leaf_hash: [u8; 32] = leaf_hash.try_into().unwrap_or([0; 32]);
    Ok(AuditRecord {
        leaf_hash,
        id: row.get(0)?,
        leaf_index: row.get::<_, i64>(2)? as u64,
        timestamp: from_micros(row.get(3)?),
        event: AuditEvent {
            account_id: row.get(1)?,
            agent_id: row.get(4)?,
            execution_id: row.get(5)?,
            key_id: row.get(6)?,
            action_type: row.get(7)?,
            action_category: row.get(8)?,
            description: row.get(9)?,
            permission_state: row.get(10)?,
            is_violation: row.get(11)?,
            input_summary: row.get(12)?,
            output_summary: row.get(13)?,
            input_digest: None,
            output_digest: None,
            payload: Value::Null,
        },
    })
}

fn anchor_query(
    c: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<AnchorRecord>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT checkpoint_size, kind, status, external_ref, detail, failures, retryable, updated_at
             FROM checkpoint_anchors {filter}"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(args, |r| {
            let detail: String = r.get(4)?;
            Ok(AnchorRecord {
                checkpoint_size: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                status: r.get(2)?,
                external_ref: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                failures: r.get(5)?,
                retryable: r.get(6)?,
                updated_at: from_micros(r.get(7)?),
            })
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    Ok(rows)
}

fn start_execution_tx(
    tx: &Transaction<'_>,
    id: ExecutionId,
    new: NewExecution,
    started: audit_log::Prepared,
) -> StoreResult<(Execution, AuditRecord)> {
    let execution = insert_execution_tx(tx, id, new, None)?;
    let record = one(audit_log::append_prepared(tx, vec![started])?)?;
    Ok((execution, record))
}

/// The only record of a one-event append.
fn one(mut records: Vec<AuditRecord>) -> StoreResult<AuditRecord> {
    records
        .pop()
        .ok_or_else(|| StoreError::Internal("append produced no record".into()))
}

/// Inserts an execution row: running (`outcome` None), or already finished.
/// Answers the row as written, without reading it back.
fn insert_execution_tx(
    tx: &Transaction<'_>,
    id: ExecutionId,
    new: NewExecution,
    outcome: Option<ExecutionOutcome>,
) -> StoreResult<Execution> {
    let started_at = now_micros();
    let finished_at = outcome.as_ref().map(|_| now_micros());
    let written = outcome.as_ref();
    execute_cached(
        tx,
        "INSERT INTO executions (id, account_id, agent_id, agent_version, code_sha256, key_id,
         parent_execution_id, status, input, output, report, violation_count, was_terminated,
         duration_ms, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            id,
            new.account_id,
            new.agent_id,
            new.agent_version,
            new.code_sha256,
            new.key_id,
            new.parent_execution_id,
            written.map_or("running", |o| o.status.as_str()),
            new.input.to_string(),
            written.and_then(|o| o.output.as_ref().map(|v| v.to_string())),
            written.map_or_else(|| "{}".to_string(), |o| o.report.to_string()),
            written.map_or(0, |o| o.violation_count as i64),
            written.is_some_and(|o| o.was_terminated),
            written.map_or(0, |o| o.duration_ms as i64),
            started_at,
            finished_at
        ],
    )
    .map_err(map_err)?;
    let outcome = outcome.unwrap_or(ExecutionOutcome {
        status: ExecutionStatus::Running,
        output: None,
        report: Value::Object(Default::default()),
        violation_count: 0,
        was_terminated: false,
        duration_ms: 0,
    });
    Ok(Execution {
        id,
        account_id: new.account_id,
        agent_id: new.agent_id,
        agent_version: new.agent_version,
        code_sha256: new.code_sha256,
        key_id: new.key_id,
        parent_execution_id: new.parent_execution_id,
        status: outcome.status,
        input: new.input,
        output: outcome.output,
        report: outcome.report,
        violation_count: outcome.violation_count,
        was_terminated: outcome.was_terminated,
        duration_ms: outcome.duration_ms,
        started_at: from_micros(started_at),
        finished_at: finished_at.map(from_micros),
    })
}

fn finish_execution_tx(
    tx: &Transaction<'_>,
    account: AccountId,
    id: ExecutionId,
    outcome: &ExecutionOutcome,
    ended: audit_log::Prepared,
) -> StoreResult<Option<(Execution, AuditRecord)>> {
    let n = execute_cached(
        tx,
        "UPDATE executions SET status = ?1, output = ?2, report = ?3, violation_count = ?4,
             was_terminated = ?5, duration_ms = ?6, finished_at = ?7
             WHERE id = ?8 AND account_id = ?9 AND status = 'running'",
        params![
            outcome.status.as_str(),
            outcome.output.as_ref().map(|o| o.to_string()),
            outcome.report.to_string(),
            outcome.violation_count as i64,
            outcome.was_terminated,
            outcome.duration_ms as i64,
            now_micros(),
            id,
            account
        ],
    )
    .map_err(map_err)?;
    if n == 0 {
        return Ok(None);
    }
    let execution =
        get_execution_tx(tx, account, id)?.ok_or_else(|| StoreError::corrupt("execution"))?;
    let record = one(audit_log::append_prepared(tx, vec![ended])?)?;
    Ok(Some((execution, record)))
}

fn request_rows(
    c: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<PermissionRequest>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT id, account_id, agent_id, requested_by, grant_json, justification, status, expires_at,
             decided_by, decision_reason, decided_at, grant_expires_at, created_at, code_sha256
             FROM permission_requests {filter}"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(args, |r| {
            let grant: String = r.get(4)?;
            Ok(PermissionRequest {
                id: r.get(0)?,
                account_id: r.get(1)?,
                agent_id: r.get(2)?,
                requested_by: r.get(3)?,
                grant: serde_json::from_str(&grant).unwrap_or(Value::Null),
                justification: r.get(5)?,
                status: r.get(6)?,
                expires_at: from_micros(r.get(7)?),
                decided_by: r.get(8)?,
                decision_reason: r.get(9)?,
                decided_at: r.get::<_, Option<i64>>(10)?.map(from_micros),
                grant_expires_at: r.get::<_, Option<i64>>(11)?.map(from_micros),
                created_at: from_micros(r.get(12)?),
                code_sha256: r.get(13)?,
            })
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    Ok(rows)
}

/// Appends a mutation's audit events inside its transaction.
fn log(tx: &Transaction<'_>, events: Vec<AuditEvent>) -> StoreResult<()> {
    audit_log::append_events(tx, events).map(|_| ())
}

/// The next id of `kind` in `account`'s own numbering (`model::id_range`),
/// taken inside the write that uses it. The first one continues above any id
/// already in the account's range.
fn next_id(tx: &Transaction<'_>, account: AccountId, kind: IdKind) -> StoreResult<i64> {
    let (base, end) = id_range(account);
    let last: Option<i64> = query_row_cached(
        tx,
        "SELECT next FROM id_counters WHERE account_id = ?1 AND kind = ?2",
        params![account, kind.name()],
        |r| r.get(0),
    )
    .optional()
    .map_err(map_err)?;
    let last = match last {
        Some(n) => n,
        None => {
            let max: i64 = query_row_cached(
                tx,
                &format!(
                    "SELECT COALESCE(MAX(id), ?1) FROM {} WHERE id > ?1 AND id <= ?2",
                    kind.table()
                ),
                params![base, end],
                |r| r.get(0),
            )
            .map_err(map_err)?;
            max - base
        }
    };
    let next = last + 1;
    if base + next >= end || base + next > thetazero_core::model::MAX_ID {
        return Err(StoreError::Conflict(format!(
            "this account has used every {} id",
            kind.name()
        )));
    }
    execute_cached(
        tx,
        "INSERT INTO id_counters (account_id, kind, next) VALUES (?1, ?2, ?3)
         ON CONFLICT (account_id, kind) DO UPDATE SET next = excluded.next",
        params![account, kind.name(), next],
    )
    .map_err(map_err)?;
    Ok(base + next)
}

fn insert_key(tx: &Transaction<'_>, key: &NewKey, now: i64) -> StoreResult<ApiKey> {
    let id = KeyId::new(next_id(tx, key.account_id, IdKind::Key)?);
    execute_cached(
        tx,
        "INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes, is_owner, created_at, created_by)
         VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            key.account_id,
            key.name,
            key.prefix,
            &key.hash[..],
            scopes_text(&key.scopes),
            key.is_owner,
            now,
            key.created_by,
            id
        ],
    )
    .map_err(map_err)?;
    Ok(ApiKey {
        id,
        account_id: key.account_id,
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        scopes: key.scopes.clone(),
        is_owner: key.is_owner,
        created_at: from_micros(now),
        last_used_at: None,
        revoked_at: None,
        created_by: key.created_by,
    })
}

fn insert_account(tx: &Transaction<'_>, name: &str, now: i64) -> StoreResult<Account> {
    execute_cached(
        tx,
        "INSERT INTO accounts (name, created_at) VALUES (?1, ?2)",
        params![name, now],
    )
    .map_err(map_err)?;
    let id = AccountId::new(tx.last_insert_rowid());
    // An account's audit log is keyed below its id (see `audit_log`): ids
    // past the keys' range are refused here, with the write undone.
    if id.get() > audit_log::MAX_ACCOUNT_ID {
        return Err(StoreError::Conflict(format!(
            "this deployment holds its most accounts ({})",
            audit_log::MAX_ACCOUNT_ID
        )));
    }
    Ok(Account {
        id,
        name: name.to_string(),
        created_at: from_micros(now),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn bootstrap(&self, account_name: &str, key: NewKey) -> StoreResult<Option<Bootstrap>> {
        let name = account_name.to_string();
        self.write(move |tx| {
            let existing: i64 =
                query_row_cached(tx, "SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
                    .map_err(map_err)?;
            if existing > 0 {
                return Ok(None);
            }
            let now = now_micros();
            let account = insert_account(tx, &name, now)?;
            let key = insert_key(
                tx,
                &NewKey {
                    account_id: account.id,
                    ..key
                },
                now,
            )?;
            execute_cached(
                tx,
                "INSERT INTO deployment (key, value) VALUES ('first_account_id', ?1)",
                params![account.id.to_string()],
            )
            .map_err(map_err)?;
            Ok(Some(Bootstrap { account, key }))
        })
        .await
    }

    async fn create_account_audited(
        &self,
        name: &str,
        owner: Option<NewKey>,
        audit: Audit<(Account, Option<ApiKey>)>,
    ) -> StoreResult<(Account, Option<ApiKey>)> {
        let name = name.to_string();
        self.write(move |tx| {
            let now = now_micros();
            let account = insert_account(tx, &name, now)?;
            let key = owner
                .map(|k| {
                    insert_key(
                        tx,
                        &NewKey {
                            account_id: account.id,
                            ..k
                        },
                        now,
                    )
                })
                .transpose()?;
            let result = (account, key);
            log(tx, audit(&result))?;
            Ok(result)
        })
        .await
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.read(move |c| {
            query_row_cached(
                c,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"),
                params![id],
                account_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn first_account_id(&self) -> StoreResult<Option<AccountId>> {
        self.read(|c| {
            let v: Option<String> = query_row_cached(
                c,
                "SELECT value FROM deployment WHERE key = 'first_account_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?;
            Ok(v.and_then(|v| v.parse().ok()).map(AccountId::new))
        })
        .await
    }

    async fn create_key_audited(&self, key: NewKey, audit: Audit<ApiKey>) -> StoreResult<ApiKey> {
        self.write(move |tx| {
            let key = insert_key(tx, &key, now_micros())?;
            log(tx, audit(&key))?;
            Ok(key)
        })
        .await
    }

    async fn find_key_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<(ApiKey, [u8; 32])>> {
        let hash = *hash;
        self.read_point(move |c| {
            let found = query_row_cached(
                c,
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = ?1"),
                params![&hash[..]],
                key_row,
            )
            .optional()
            .map_err(map_err)?;
            Ok(found.and_then(|(key, stored)| {
                let stored: [u8; 32] = stored.try_into().ok()?;
                Some((key, stored))
            }))
        })
    }

    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<ApiKey>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE account_id = ?1 ORDER BY id"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![account], key_row)
                .map_err(map_err)?
                .map(|r| r.map(|(k, _)| k))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_err)?;
            Ok(rows)
        })
        .await
    }

    async fn get_key(&self, account: AccountId, id: KeyId) -> StoreResult<Option<ApiKey>> {
        self.read(move |c| {
            query_row_cached(
                c,
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1 AND account_id = ?2"),
                params![id, account],
                key_row,
            )
            .optional()
            .map(|r| r.map(|(k, _)| k))
            .map_err(map_err)
        })
        .await
    }

    async fn revoke_key_audited(
        &self,
        account: AccountId,
        id: KeyId,
        audit: Audit<ApiKey>,
    ) -> StoreResult<Option<ApiKey>> {
        self.write(move |tx| {
            // The one writer serialises this check with every other revocation.
            let keys = {
                let mut stmt = tx
                    .prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE account_id = ?1"))
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map(params![account], |r| key_row(r).map(|(k, _)| k))
                    .map_err(map_err)?;
                rows.collect::<rusqlite::Result<Vec<ApiKey>>>().map_err(map_err)?
            };
            if let Some(target) = keys.iter().find(|k| k.id == id) {
                let mut revoked = target.clone();
                revoked.revoked_at = Some(OffsetDateTime::now_utc());
                check_key_change(&keys, &revoked)?;
            }
            execute_cached(tx,
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2 AND account_id = ?3",
                params![now_micros(), id, account],
            )
            .map_err(map_err)?;
            let key = query_row_cached(tx,
                    &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1 AND account_id = ?2"),
                    params![id, account],
                    key_row,
                )
                .optional()
                .map(|r| r.map(|(k, _)| k))
                .map_err(map_err)?;
            if let Some(key) = &key {
                log(tx, audit(key))?;
            }
            Ok(key)
        })
        .await
    }

    async fn set_key_scopes_audited(
        &self,
        account: AccountId,
        id: KeyId,
        scopes: Vec<KeyScope>,
        audit: Audit<(ApiKey, ApiKey)>,
    ) -> StoreResult<Option<ApiKey>> {
        self.write(move |tx| {
            let keys = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLS} FROM api_keys WHERE account_id = ?1"
                    ))
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map(params![account], |r| key_row(r).map(|(k, _)| k))
                    .map_err(map_err)?;
                rows.collect::<rusqlite::Result<Vec<ApiKey>>>()
                    .map_err(map_err)?
            };
            let Some(before) = keys.iter().find(|k| k.id == id).cloned() else {
                return Ok(None);
            };
            if let Some(refusal) = scope_change_refusal(&before) {
                return Err(refusal);
            }
            let mut after = before.clone();
            after.scopes = scopes;
            check_key_change(&keys, &after)?;
            execute_cached(
                tx,
                "UPDATE api_keys SET scopes = ?1 WHERE id = ?2 AND account_id = ?3",
                params![scopes_text(&after.scopes), id, account],
            )
            .map_err(map_err)?;
            log(tx, audit(&(before, after.clone())))?;
            Ok(Some(after))
        })
        .await
    }

    async fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> StoreResult<()> {
        let at = to_micros(at);
        self.write(move |tx| {
            execute_cached(
                tx,
                "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
                params![at, id],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn upsert_agent_audited(
        &self,
        account: AccountId,
        spec: AgentSpec,
        audit: Audit<(Agent, bool)>,
    ) -> StoreResult<(Agent, bool)> {
        self.write(move |tx| {
            let now = now_micros();
            let existing: Option<AgentId> = query_row_cached(tx,
                    "SELECT id FROM agents WHERE account_id = ?1 AND name = ?2",
                    params![account, spec.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            let config = spec.config.to_stored_json().to_string();
            let permissions = spec.permissions.to_json().to_string();
            let id = match existing {
                Some(id) => {
                    execute_cached(tx,
                        // A killed agent stays killed whatever a re-registration
                        // asks: only the kill switch revives it.
                        "UPDATE agents SET version = ?1, description = ?2,
                         status = CASE WHEN status = 'killed' THEN 'killed' ELSE ?3 END,
                         entry_code = ?4, config = ?5, permissions = ?6, updated_at = ?7
                         WHERE id = ?8",
                        params![
                            spec.version,
                            spec.description,
                            spec.status.as_str(),
                            spec.entry_code,
                            config,
                            permissions,
                            now,
                            id
                        ],
                    )
                    .map_err(map_err)?;
                    id
                }
                None => {
                    let id = AgentId::new(next_id(tx, account, IdKind::Agent)?);
                    execute_cached(tx,
                        "INSERT INTO agents (id, account_id, name, version, description, status, entry_code,
                         config, permissions, created_at, updated_at)
                         VALUES (?10, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                        params![
                            account,
                            spec.name,
                            spec.version,
                            spec.description,
                            spec.status.as_str(),
                            spec.entry_code,
                            config,
                            permissions,
                            now,
                            id
                        ],
                    )
                    .map_err(map_err)?;
                    id
                }
            };
            let agent = get_agent_tx(tx, account, id)?.ok_or_else(|| StoreError::corrupt("agent"))?;
            let result = (agent, existing.is_none());
            log(tx, audit(&result))?;
            Ok(result)
        })
        .await
    }

    async fn list_agents(&self, account: AccountId, page: PageRequest) -> StoreResult<Page<Agent>> {
        self.read(move |c| {
            let total: i64 = query_row_cached(c,
                    "SELECT COUNT(*) FROM agents WHERE account_id = ?1",
                    params![account],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {AGENT_COLS} FROM agents WHERE account_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![account, page.limit as i64, page.offset().min(i64::MAX as u64) as i64],
                    agent_row,
                )
                .map_err(map_err)?;
            let mut items = Vec::new();
            for row in rows {
                items.push(row.map_err(map_err)??.agent);
            }
            Ok(Page {
                items,
                total: total as u64,
            })
        })
        .await
    }

    async fn get_agent(&self, account: AccountId, id: AgentId) -> StoreResult<Option<Agent>> {
        self.read_point(move |c| get_agent_tx(c, account, id))
    }

    async fn get_agent_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Agent>> {
        let name = name.to_string();
        self.read(move |c| {
            let row = query_row_cached(
                c,
                &format!("SELECT {AGENT_COLS} FROM agents WHERE account_id = ?1 AND name = ?2"),
                params![account, name],
                agent_row,
            )
            .optional()
            .map_err(map_err)?;
            row.map(|r| r.map(|r| r.agent)).transpose()
        })
        .await
    }

    async fn update_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        patch: AgentPatch,
        audit: Audit<Agent>,
    ) -> StoreResult<Option<Agent>> {
        self.write(move |tx| {
            let Some(current) = get_agent_tx(tx, account, id)? else {
                return Ok(None);
            };
            let version = patch.version.unwrap_or(current.version);
            let description = patch.description.unwrap_or(current.description);
            let status = patch.status.unwrap_or(current.status);
            let entry_code = patch.entry_code.unwrap_or(current.entry_code);
            let config = patch.config.unwrap_or(current.config);
            let permissions = patch.permissions.unwrap_or(current.permissions);
            execute_cached(
                tx,
                "UPDATE agents SET version = ?1, description = ?2, status = ?3, entry_code = ?4,
                 config = ?5, permissions = ?6, updated_at = ?7 WHERE id = ?8 AND account_id = ?9",
                params![
                    version,
                    description,
                    status.as_str(),
                    entry_code,
                    config.to_stored_json().to_string(),
                    permissions.to_json().to_string(),
                    now_micros(),
                    id,
                    account
                ],
            )
            .map_err(map_err)?;
            let agent = get_agent_tx(tx, account, id)?;
            if let Some(agent) = &agent {
                log(tx, audit(agent))?;
            }
            Ok(agent)
        })
        .await
    }

    async fn delete_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        audit: Audit<AgentId>,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = execute_cached(
                tx,
                "DELETE FROM agents WHERE id = ?1 AND account_id = ?2",
                params![id, account],
            )
            .map_err(map_err)?;
            if n > 0 {
                log(tx, audit(&id))?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn put_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        value: &Value,
        audit: Audit<ContextEntry>,
    ) -> StoreResult<ContextEntry> {
        let key = key.to_string();
        let value = value.clone();
        self.write(move |tx| {
            let owned: Option<i64> = query_row_cached(tx,
                    "SELECT id FROM agents WHERE id = ?1 AND account_id = ?2",
                    params![agent, account],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            if owned.is_none() {
                return Err(StoreError::Conflict("agent no longer exists".into()));
            }
            let now = now_micros();
            execute_cached(tx,
                "INSERT INTO agent_context (agent_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![agent, key, value.to_string(), now],
            )
            .map_err(map_err)?;
            let entry = ContextEntry {
                key,
                value,
                updated_at: from_micros(now),
            };
            log(tx, audit(&entry))?;
            Ok(entry)
        })
        .await
    }

    async fn get_context(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
    ) -> StoreResult<Option<ContextEntry>> {
        let key = key.to_string();
        self.read(move |c| {
            let row: Option<(String, i64)> = query_row_cached(c,
                    "SELECT c.value, c.updated_at FROM agent_context c JOIN agents a ON a.id = c.agent_id
                     WHERE c.agent_id = ?1 AND a.account_id = ?2 AND c.key = ?3",
                    params![agent, account, key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(map_err)?;
            match row {
                None => Ok(None),
                Some((value, at)) => Ok(Some(ContextEntry {
                    key,
                    value: serde_json::from_str(&value).map_err(|_| StoreError::corrupt("context value"))?,
                    updated_at: from_micros(at),
                })),
            }
        })
        .await
    }

    async fn delete_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        audit: Audit<String>,
    ) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |tx| {
            let n = execute_cached(
                tx,
                "DELETE FROM agent_context WHERE agent_id = ?1 AND key = ?2
                     AND agent_id IN (SELECT id FROM agents WHERE account_id = ?3)",
                params![agent, key, account],
            )
            .map_err(map_err)?;
            if n > 0 {
                log(tx, audit(&key))?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn reserve_execution_id(&self, account: AccountId) -> StoreResult<ExecutionId> {
        // This process alone writes the database: executions are numbered
        // here, per account, continuing above the highest id in the
        // account's range (or the table's sequence, for the first account,
        // whose range holds every id given before per-account numbering).
        if let Some(next) = self
            .next_execution_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&account)
        {
            *next += 1;
            return Ok(ExecutionId::new(*next));
        }
        let (base, end) = id_range(account);
        let last: i64 = self
            .read(move |c| {
                query_row_cached(
                    c,
                    "SELECT MAX(COALESCE((SELECT MAX(id) FROM executions WHERE id > ?1 AND id <= ?2), ?1),
                                COALESCE((SELECT seq FROM sqlite_sequence
                                           WHERE name = 'executions' AND seq > ?1 AND seq <= ?2), ?1))",
                    params![base, end],
                    |r| r.get(0),
                )
                .map_err(map_err)
            })
            .await?;
        let mut ids = self
            .next_execution_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let next = ids.entry(account).or_insert(last);
        if *next >= end - 1 || *next >= thetazero_core::model::MAX_ID {
            return Err(StoreError::Conflict(
                "this account has used every execution id".into(),
            ));
        }
        *next += 1;
        Ok(ExecutionId::new(*next))
    }

    async fn create_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord)> {
        // The leaf is built here, on the caller's thread; the single writer
        // only places it.
        let started = audit_log::prepare(started)?;
        self.write(move |tx| start_execution_tx(tx, id, new, started))
            .await
    }

    async fn finish_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<Option<(Execution, AuditRecord)>> {
        let ended = audit_log::prepare(ended)?;
        self.write(move |tx| finish_execution_tx(tx, account, id, &outcome, ended))
            .await
    }

    async fn record_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord, AuditRecord)> {
        // Start and end in one transaction: one durable commit, and the row
        // is written once, already finished. The leaves are built before the
        // writer gets the work.
        let events = vec![audit_log::prepare(started)?, audit_log::prepare(ended)?];
        self.write(move |tx| {
            let execution = insert_execution_tx(tx, id, new, Some(outcome))?;
            // Both events in one append: one head update, one Merkle step.
            let mut records = audit_log::append_prepared(tx, events)?.into_iter();
            let (Some(first), Some(last)) = (records.next(), records.next()) else {
                return Err(StoreError::Internal(
                    "append produced too few records".into(),
                ));
            };
            Ok((execution, first, last))
        })
        .await
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
    ) -> StoreResult<Option<Execution>> {
        self.read(move |c| get_execution_tx(c, account, id)).await
    }

    async fn list_executions(
        &self,
        account: AccountId,
        agent: AgentId,
        status: Option<ExecutionStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<Execution>> {
        self.read(move |c| {
            let status = status.map(|s| s.as_str());
            let total: i64 = query_row_cached(
                c,
                "SELECT COUNT(*) FROM executions WHERE account_id = ?1 AND agent_id = ?2
                     AND (?3 IS NULL OR status = ?3)",
                params![account, agent, status],
                |r| r.get(0),
            )
            .map_err(map_err)?;
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLS} FROM executions WHERE account_id = ?1 AND agent_id = ?2
                     AND (?3 IS NULL OR status = ?3) ORDER BY id DESC LIMIT ?4 OFFSET ?5"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![
                        account,
                        agent,
                        status,
                        page.limit as i64,
                        page.offset().min(i64::MAX as u64) as i64
                    ],
                    execution_row,
                )
                .map_err(map_err)?;
            let mut items = Vec::new();
            for row in rows {
                items.push(row.map_err(map_err)??);
            }
            Ok(Page {
                items,
                total: total as u64,
            })
        })
        .await
    }

    async fn storage_get(&self, account: AccountId, key: &str) -> StoreResult<Option<Value>> {
        let key = key.to_string();
        self.read(move |c| {
            let v: Option<String> = query_row_cached(
                c,
                "SELECT value FROM account_storage WHERE account_id = ?1 AND key = ?2",
                params![account, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?;
            v.map(|v| serde_json::from_str(&v).map_err(|_| StoreError::corrupt("storage value")))
                .transpose()
        })
        .await
    }

    async fn account_usage(&self, account: AccountId) -> StoreResult<AccountUsage> {
        self.read(move |c| {
            let context_bytes: i64 = query_row_cached(
                c,
                "SELECT COALESCE(SUM(length(CAST(c.key AS BLOB)) + length(CAST(c.value AS BLOB))), 0)
                 FROM agent_context c JOIN agents a ON a.id = c.agent_id WHERE a.account_id = ?1",
                params![account],
                |r| r.get(0),
            )
            .map_err(map_err)?;
            let storage_bytes: i64 = query_row_cached(
                c,
                "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)
                 FROM account_storage WHERE account_id = ?1",
                params![account],
                |r| r.get(0),
            )
            .map_err(map_err)?;
            Ok(AccountUsage {
                context_bytes: context_bytes.max(0) as u64,
                storage_bytes: storage_bytes.max(0) as u64,
            })
        })
        .await
    }

    async fn storage_put(&self, account: AccountId, key: &str, value: &Value) -> StoreResult<()> {
        let key = key.to_string();
        let value = value.to_string();
        self.write(move |tx| {
            execute_cached(tx,
                "INSERT INTO account_storage (account_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![account, key, value, now_micros()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
        // Leaves are built here, on the caller's thread; the single writer
        // only places them.
        let prepared = events
            .into_iter()
            .map(audit_log::prepare)
            .collect::<StoreResult<Vec<_>>>()?;
        self.write(move |tx| audit_log::append_prepared(tx, prepared))
            .await
    }

    async fn query_audit(
        &self,
        account: AccountId,
        query: &AuditQuery,
    ) -> StoreResult<Page<AuditRecord>> {
        let query = query.clone();
        self.read(move |c| {
            let mut clauses = vec!["e.account_id = ?".to_string()];
            let mut args: Vec<rusqlite::types::Value> = vec![account.get().into()];
            if let Some(from) = query.from {
                clauses.push("e.timestamp >= ?".into());
                args.push(to_micros(from).into());
            }
            if let Some(to) = query.to {
                clauses.push("e.timestamp <= ?".into());
                args.push(to_micros(to).into());
            }
            if !query.action_types.is_empty() {
                let marks = vec!["?"; query.action_types.len()].join(", ");
                clauses.push(format!("e.action_type IN ({marks})"));
                args.extend(query.action_types.iter().map(|t| t.clone().into()));
            }
            if query.violations_only {
                clauses.push("e.is_violation = 1".into());
            }
            if let Some(agent) = query.agent_id {
                clauses.push("e.agent_id = ?".into());
                args.push(agent.get().into());
            }
            if let Some(execution) = query.execution_id {
                clauses.push("e.execution_id = ?".into());
                args.push(execution.get().into());
            }
            let filter = clauses.join(" AND ");
            let total: i64 = query_row_cached(c,
                    &format!("SELECT COUNT(*) FROM audit_events e WHERE {filter}"),
                    rusqlite::params_from_iter(args.iter()),
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            let mut page_args = args.clone();
            let mut page_filter = filter;
            if let Some(after) = query.after {
                page_filter.push_str(" AND e.leaf_index > ?");
                page_args.push((after.min(i64::MAX as u64) as i64).into());
            }
            page_args.push((query.limit.min(i64::MAX as u64) as i64).into());
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLS} FROM {AUDIT_FROM} WHERE {page_filter} ORDER BY e.leaf_index LIMIT ?"
                ))
                .map_err(map_err)?;
            let items = stmt
                .query_map(rusqlite::params_from_iter(page_args.iter()), audit_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_err)?;
            Ok(Page {
                items,
                total: total as u64,
            })
        })
        .await
    }

    async fn audit_record(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<AuditRecord>> {
        self.read(move |c| {
            query_row_cached(
                c,
                &format!(
                    "SELECT {AUDIT_COLS} FROM {AUDIT_FROM} WHERE e.id = ?1 AND e.account_id = ?2"
                ),
                params![id, account],
                audit_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn audit_payload(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<Value>> {
        let text: Option<String> = self
            .read(move |c| {
                query_row_cached(
                    c,
                    "SELECT p.payload FROM audit_payloads p JOIN audit_events e ON e.id = p.audit_id
                     WHERE p.audit_id = ?1 AND e.account_id = ?2",
                    params![id, account],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)
            })
            .await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn audit_log_size(&self, account: AccountId) -> StoreResult<u64> {
        self.read(move |c| audit_log::log_size(c, account)).await
    }

    async fn audit_leaves(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        self.read(move |c| audit_log::leaves(c, account, from, to, limit))
            .await
    }

    async fn audit_hashes(
        &self,
        account: AccountId,
        indexes: Vec<u64>,
    ) -> StoreResult<Vec<[u8; 32]>> {
        self.read(move |c| audit_log::hashes(c, account, &indexes))
            .await
    }

    async fn store_checkpoint(&self, account: AccountId, size: u64, note: &str) -> StoreResult<()> {
        let note = note.to_string();
        self.write(move |tx| audit_log::store_checkpoint(tx, account, size, &note))
            .await
    }

    async fn latest_checkpoint(&self, account: AccountId) -> StoreResult<Option<StoredCheckpoint>> {
        self.read(move |c| {
            audit_log::checkpoint_query(
                c,
                "SELECT size, note, created_at FROM audit_checkpoints WHERE account_id = ?1 AND size >= ?2 ORDER BY size DESC LIMIT 1",
                account,
                0,
            )
        })
        .await
    }

    async fn checkpoint_covering(
        &self,
        account: AccountId,
        size: u64,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        self.read(move |c| {
            audit_log::checkpoint_query(
                c,
                "SELECT size, note, created_at FROM audit_checkpoints WHERE account_id = ?1 AND size >= ?2 ORDER BY size LIMIT 1",
                account,
                size,
            )
        })
        .await
    }

    async fn checkpoints(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        self.read(move |c| audit_log::checkpoints(c, account, from, to, limit))
            .await
    }

    async fn logs_needing_checkpoint(&self) -> StoreResult<Vec<(AccountId, u64, u64)>> {
        self.read(audit_log::needing_checkpoint).await
    }

    async fn pending_permission_requests_total(&self) -> StoreResult<u64> {
        let now = now_micros();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM permission_requests WHERE status = 'pending' AND expires_at > ?1",
            )
            .and_then(|mut s| s.query_row([now], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn audit_logs(&self) -> StoreResult<Vec<(AccountId, u64)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT account_id, size FROM audit_log_heads WHERE size > 0 ORDER BY account_id")
                .map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, AccountId>(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_err)?;
            Ok(rows)
        })
        .await
    }

    async fn put_anchor(&self, account: AccountId, anchor: AnchorRecord) -> StoreResult<()> {
        self.write(move |tx| {
            execute_cached(tx,
                "INSERT INTO checkpoint_anchors (account_id, checkpoint_size, kind, status, external_ref, detail,
                 failures, retryable, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (account_id, checkpoint_size, kind) DO UPDATE SET status = excluded.status,
                 external_ref = excluded.external_ref, detail = excluded.detail, failures = excluded.failures,
                 retryable = excluded.retryable, updated_at = excluded.updated_at",
                params![
                    account,
                    anchor.checkpoint_size as i64,
                    anchor.kind,
                    anchor.status,
                    anchor.external_ref,
                    anchor.detail.to_string(),
                    anchor.failures,
                    anchor.retryable,
                    to_micros(anchor.updated_at)
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn anchors(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
    ) -> StoreResult<Vec<AnchorRecord>> {
        self.read(move |c| {
            anchor_query(
                c,
                "WHERE account_id = ?1 AND checkpoint_size >= ?2 AND checkpoint_size <= ?3 ORDER BY checkpoint_size, kind",
                params![account, from.min(i64::MAX as u64) as i64, to.min(i64::MAX as u64) as i64],
            )
        })
        .await
    }

    async fn last_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>> {
        let kind = kind.to_string();
        self.read(move |c| {
            anchor_query(
                c,
                "WHERE account_id = ?1 AND kind = ?2 ORDER BY updated_at DESC, checkpoint_size DESC LIMIT 1",
                params![account, kind],
            )
            .map(|mut v| v.pop())
        })
        .await
    }

    async fn last_confirmed_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>> {
        let kind = kind.to_string();
        self.read(move |c| {
            anchor_query(
                c,
                "WHERE account_id = ?1 AND kind = ?2 AND status = 'confirmed' ORDER BY checkpoint_size DESC LIMIT 1",
                params![account, kind],
            )
            .map(|mut v| v.pop())
        })
        .await
    }

    async fn create_permission_request_audited(
        &self,
        new: NewPermissionRequest,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<PermissionRequest> {
        self.write(move |tx| {
            let owned: Option<i64> = query_row_cached(tx,
                    "SELECT id FROM agents WHERE id = ?1 AND account_id = ?2",
                    params![new.agent_id, new.account_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            if owned.is_none() {
                return Err(StoreError::Conflict("agent no longer exists".into()));
            }
            // Writes run one transaction at a time, so the count and the
            // insert below cannot interleave with another request's. Overdue
            // requests not yet marked expired do not count.
            if let Some(limit) = new.pending_limit {
                let open: i64 = query_row_cached(tx,
                        "SELECT COUNT(*) FROM permission_requests WHERE account_id = ?1 AND agent_id = ?2
                         AND status = 'pending' AND expires_at > ?3",
                        params![new.account_id, new.agent_id, now_micros()],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                let open = open.max(0) as u64;
                if open >= limit {
                    return Err(StoreError::PendingLimit { limit, open });
                }
            }
            let id = PermissionRequestId::new(next_id(tx, new.account_id, IdKind::PermissionRequest)?);
            execute_cached(tx,
                "INSERT INTO permission_requests (id, account_id, agent_id, requested_by, grant_json, justification,
                 status, expires_at, created_at, code_sha256) VALUES (?9, ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8)",
                params![
                    new.account_id,
                    new.agent_id,
                    new.requested_by,
                    new.grant.to_string(),
                    new.justification,
                    to_micros(new.expires_at),
                    now_micros(),
                    new.code_sha256,
                    id
                ],
            )
            .map_err(map_err)?;
            let request = request_rows(tx, "WHERE account_id = ?1 AND id = ?2", params![new.account_id, id])?
                .pop()
                .ok_or_else(|| StoreError::corrupt("permission request"))?;
            log(tx, audit(&request))?;
            Ok(request)
        })
        .await
    }

    async fn permission_requests(
        &self,
        account: AccountId,
        id: Option<PermissionRequestId>,
        status: Option<PermissionRequestStatus>,
        agent: Option<AgentId>,
        limit: u64,
    ) -> StoreResult<Vec<PermissionRequest>> {
        // One statement per combination of filters: with `?n IS NULL OR`
        // in a single statement, SQLite re-prepared it whenever the
        // bindings changed.
        let mut filter = String::from("WHERE account_id = ?");
        let mut args: Vec<rusqlite::types::Value> = vec![account.get().into()];
        if let Some(id) = id {
            filter.push_str(" AND id = ?");
            args.push(id.get().into());
        }
        if let Some(status) = status {
            filter.push_str(" AND status = ?");
            args.push(status.as_str().to_owned().into());
        }
        if let Some(agent) = agent {
            filter.push_str(" AND agent_id = ?");
            args.push(agent.get().into());
        }
        filter.push_str(" ORDER BY id DESC LIMIT ?");
        args.push((limit.min(i64::MAX as u64) as i64).into());
        self.read_point(|c| request_rows(c, &filter, rusqlite::params_from_iter(args)))
    }

    async fn decide_permission_request_audited(
        &self,
        account: AccountId,
        id: PermissionRequestId,
        decision: RequestDecision,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<Option<PermissionRequest>> {
        self.write(move |tx| {
            let n = execute_cached(
                tx,
                "UPDATE permission_requests SET status = ?1, decided_by = ?2, decision_reason = ?3,
                     decided_at = ?4, grant_expires_at = ?5
                     WHERE account_id = ?6 AND id = ?7 AND status = 'pending'",
                params![
                    decision.status,
                    decision.decided_by,
                    decision.reason,
                    now_micros(),
                    decision.grant_expires_at.map(to_micros),
                    account,
                    id
                ],
            )
            .map_err(map_err)?;
            if n == 0 {
                return Ok(None);
            }
            let request = request_rows(
                tx,
                "WHERE account_id = ?1 AND id = ?2",
                params![account, id],
            )?
            .pop()
            .ok_or_else(|| StoreError::corrupt("permission request"))?;
            log(tx, audit(&request))?;
            Ok(Some(request))
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.read_point(|c| {
            c.prepare_cached("SELECT value FROM deployment WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
                .map_err(map_err)
        })
    }

    async fn put_setting_audited(
        &self,
        key: &str,
        value: Option<String>,
        audit: Audit<()>,
    ) -> StoreResult<()> {
        let key = key.to_string();
        self.write(move |tx| {
            match value {
                Some(v) => execute_cached(
                    tx,
                    "INSERT INTO deployment (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, v],
                ),
                None => execute_cached(tx, "DELETE FROM deployment WHERE key = ?1", params![key]),
            }
            .map_err(map_err)?;
            log(tx, audit(&()))
        })
        .await
    }

    async fn rate_acquire(&self, limit: &RateLimit) -> StoreResult<RateDecision> {
        let now = OffsetDateTime::now_utc();
        let now_us = (now.unix_timestamp_nanos() / 1_000) as i64;
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        if rates.len() >= 100_000 {
            // Counters whose TAT has passed are back to a full burst: the
            // same as absent.
            rates.retain(|_, tat| *tat > now_us);
        }
        let tat = rates.get(&limit.key).copied();
        Ok(match gcra(now_us, tat, limit.limit, limit.window) {
            Ok(next) => {
                rates.insert(limit.key.clone(), next);
                RateDecision::Admitted
            }
            Err(wait_us) => RateDecision::Refused {
                retry_after: std::time::Duration::from_micros(wait_us.max(0) as u64),
            },
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            query_row_cached(c, "SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// A statement with a bound `LIMIT`, bound again on every call, is
    /// prepared once: its plan does not depend on the value.
    #[test]
    fn bound_limits_do_not_prepare_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = open(&path).unwrap();
        let sql = "SELECT id FROM permission_requests WHERE account_id = ?1 AND status = ?2
                   ORDER BY id DESC LIMIT ?3";
        for limit in [100, 100, 7, 100] {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let rows = stmt
                .query_map(params![1, "approved", limit], |r| r.get::<_, i64>(0))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }
}
