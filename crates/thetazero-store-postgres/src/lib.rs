//! The PostgreSQL implementation of `Store`, and `PgBus`, the event bus that
//! spans replicas. Knows nothing of HTTP; must behave exactly as the SQLite
//! backend does, which the shared conformance suite checks.
//!
//! Writes run in ordinary concurrent transactions (PostgreSQL serialises what
//! must be serialised with row locks); the one ordering the application needs
//! across processes, the audit log's contiguous leaf indices, comes from the
//! `audit_log_heads` counter row, which each append locks until it commits.

#![forbid(unsafe_code)]

mod audit;
mod bus;
mod connect;
mod error;
mod migrate;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Object, Pool};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use thetazero_core::audit::{AnchorRecord, AuditEvent, AuditQuery, AuditRecord, StoredCheckpoint};
use thetazero_core::model::{
    id_range, Account, AccountId, Agent, AgentId, AgentPatch, AgentSpec, ApiKey, AuditRecordId,
    ContextEntry, Execution, ExecutionId, ExecutionOutcome, ExecutionStatus, IdKind, KeyId,
    NewExecution, NewKey, NewPermissionRequest, Page, PageRequest, PermissionRequest,
    PermissionRequestId, PermissionRequestStatus, RequestDecision,
};
use thetazero_core::rate::{interval_us, RateDecision, RateLimit};
use thetazero_core::store::{
    check_key_change, decode_agent_columns, scope_change_refusal, AccountUsage, Audit, Bootstrap,
    Store, StoreError, StoreResult,
};
use thetazero_core::KeyScope;

pub use bus::{BusOptions, PgBus};
pub use connect::{parse_url, PgOptions};
pub use migrate::{BUS_MIGRATIONS, MIGRATIONS};

use error::{map_pg, map_pool};

/// Commits a transaction, timing it for `/metrics`.
pub(crate) async fn commit(tx: deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
    let started = std::time::Instant::now();
    let committed = tx.commit().await.map_err(map_pg);
    thetazero_core::telemetry::global()
        .store_commit
        .observe(started.elapsed().as_secs_f64());
    committed
}

/// Every `Store` method, over a pool of PostgreSQL connections.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    audit: std::sync::Arc<audit::AuditWriter>,
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL; a
    /// `options=-c search_path=...` parameter selects a schema) with default
    /// limits, and applies any migrations it has not seen.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        PgStore::connect_config(parse_url(url)?, PgOptions::default()).await
    }

    /// As `connect`, from a parsed configuration and explicit limits.
    pub async fn connect_config(
        config: tokio_postgres::Config,
        options: PgOptions,
    ) -> StoreResult<PgStore> {
        let pool = connect::pool(connect::harden(config, &options), &options)?;
        let mut client = pool.get().await.map_err(map_pool)?;
        migrate::apply(&mut client, MIGRATIONS)
            .await
            .map_err(map_pg)?;
        drop(client);
        let audit = audit::AuditWriter::start(pool.clone(), options.audit_writers);
        Ok(PgStore {
            pool,
            audit: std::sync::Arc::new(audit),
        })
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(map_pool)
    }
}

fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

const REQUEST_COLS: &str = "id, account_id, agent_id, requested_by, grant_json, justification, status, expires_at, decided_by, decision_reason, decided_at, grant_expires_at, created_at, code_sha256";

fn request_row(r: &Row) -> StoreResult<PermissionRequest> {
    let grant: String = col(r, 4)?;
    Ok(PermissionRequest {
        id: col(r, 0)?,
        account_id: col(r, 1)?,
        agent_id: col(r, 2)?,
        requested_by: col(r, 3)?,
        grant: serde_json::from_str(&grant).unwrap_or(serde_json::Value::Null),
        justification: col(r, 5)?,
        status: col(r, 6)?,
        expires_at: from_micros(col(r, 7)?),
        decided_by: col(r, 8)?,
        decision_reason: col(r, 9)?,
        decided_at: col::<Option<i64>>(r, 10)?.map(from_micros),
        grant_expires_at: col::<Option<i64>>(r, 11)?.map(from_micros),
        created_at: from_micros(col(r, 12)?),
        code_sha256: col(r, 13)?,
    })
}

/// Reads one column without panicking on an unexpected type.
fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(map_pg)
}

/// Runs a cached prepared statement and answers every row.
async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query(&stmt, params).await.map_err(map_pg)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query_opt(&stmt, params).await.map_err(map_pg)
}

async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Row> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query_one(&stmt, params).await.map_err(map_pg)
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.execute(&stmt, params).await.map_err(map_pg)
}

// ---- row mapping ----

const ACCOUNT_COLS: &str = "id, name, created_at";

fn account_row(row: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: col(row, 0)?,
        name: col(row, 1)?,
        created_at: from_micros(col(row, 2)?),
    })
}

const KEY_COLS: &str =
    "id, account_id, name, prefix, scopes, is_owner, created_at, last_used_at, revoked_at, hash, created_by";

fn key_row(row: &Row) -> StoreResult<(ApiKey, Vec<u8>)> {
    let scopes: String = col(row, 4)?;
    Ok((
        ApiKey {
            id: col(row, 0)?,
            account_id: col(row, 1)?,
            name: col(row, 2)?,
            prefix: col(row, 3)?,
            scopes: scopes.split(' ').filter_map(KeyScope::parse).collect(),
            is_owner: col(row, 5)?,
            created_at: from_micros(col(row, 6)?),
            last_used_at: col::<Option<i64>>(row, 7)?.map(from_micros),
            revoked_at: col::<Option<i64>>(row, 8)?.map(from_micros),
            created_by: col(row, 10)?,
        },
        col(row, 9)?,
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

fn agent_row(row: &Row) -> StoreResult<Agent> {
    let status: String = col(row, 5)?;
    let config: String = col(row, 7)?;
    let permissions: String = col(row, 8)?;
    let (status, config, permissions) = decode_agent_columns(&status, &config, &permissions)?;
    Ok(Agent {
        id: col(row, 0)?,
        account_id: col(row, 1)?,
        name: col(row, 2)?,
        version: col(row, 3)?,
        description: col(row, 4)?,
        status,
        entry_code: col(row, 6)?,
        config,
        permissions,
        created_at: from_micros(col(row, 9)?),
        updated_at: from_micros(col(row, 10)?),
    })
}

async fn get_agent_in<C: GenericClient>(
    c: &C,
    account: AccountId,
    id: AgentId,
    lock: bool,
) -> StoreResult<Option<Agent>> {
    let sql = if lock {
        format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1 AND account_id = $2 FOR UPDATE")
    } else {
        format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1 AND account_id = $2")
    };
    query_opt(c, &sql, &[&id, &account])
        .await?
        .as_ref()
        .map(agent_row)
        .transpose()
}

const EXECUTION_COLS: &str = "id, account_id, agent_id, agent_version, code_sha256, key_id, parent_execution_id, status, input, output, report, violation_count, was_terminated, duration_ms, started_at, finished_at";

fn execution_row(row: &Row) -> StoreResult<Execution> {
    let status: String = col(row, 7)?;
    let input: String = col(row, 8)?;
    let output: Option<String> = col(row, 9)?;
    let report: String = col(row, 10)?;
    let status =
        ExecutionStatus::parse(&status).ok_or_else(|| StoreError::corrupt("execution status"))?;
    let input: Value =
        serde_json::from_str(&input).map_err(|_| StoreError::corrupt("execution input"))?;
    let output: Option<Value> = output
        .map(|o| serde_json::from_str(&o))
        .transpose()
        .map_err(|_| StoreError::corrupt("execution output"))?;
    let report: Value =
        serde_json::from_str(&report).map_err(|_| StoreError::corrupt("execution report"))?;
    Ok(Execution {
        id: col(row, 0)?,
        account_id: col(row, 1)?,
        agent_id: col(row, 2)?,
        agent_version: col(row, 3)?,
        code_sha256: col(row, 4)?,
        key_id: col(row, 5)?,
        parent_execution_id: col(row, 6)?,
        status,
        input,
        output,
        report,
        violation_count: col::<i64>(row, 11)? as u64,
        was_terminated: col(row, 12)?,
        duration_ms: col::<i64>(row, 13)? as u64,
        started_at: from_micros(col(row, 14)?),
        finished_at: col::<Option<i64>>(row, 15)?.map(from_micros),
    })
}

const AUDIT_COLS: &str = "e.id, e.account_id, e.leaf_index, e.timestamp, e.agent_id, e.execution_id, e.key_id, e.action_type, e.action_category, e.description, e.permission_state, e.is_violation, e.input_summary, e.output_summary, l.leaf_hash";
const AUDIT_FROM: &str = "audit_events e JOIN audit_leaves l ON l.account_id = e.account_id AND l.leaf_index = e.leaf_index";

fn audit_row(row: &Row) -> StoreResult<AuditRecord> {
    let leaf_hash: Vec<u8> = col(row, 14)?;
    Ok(AuditRecord {
        id: col(row, 0)?,
        leaf_index: col::<i64>(row, 2)? as u64,
        leaf_hash: leaf_hash
            .try_into()
            .map_err(|_| StoreError::corrupt("leaf hash"))?,
        timestamp: from_micros(col(row, 3)?),
        event: AuditEvent {
            account_id: col(row, 1)?,
            agent_id: col(row, 4)?,
            execution_id: col(row, 5)?,
            key_id: col(row, 6)?,
            action_type: col(row, 7)?,
            action_category: col(row, 8)?,
            description: col(row, 9)?,
            permission_state: col(row, 10)?,
            is_violation: col(row, 11)?,
            input_summary: col(row, 12)?,
            output_summary: col(row, 13)?,
            input_digest: None,
            output_digest: None,
            payload: Value::Null,
        },
    })
}

const CHECKPOINT_COLS: &str = "size, note, created_at";

fn checkpoint_row(row: &Row) -> StoreResult<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: col::<i64>(row, 0)? as u64,
        note: col(row, 1)?,
        created_at: from_micros(col(row, 2)?),
    })
}

/// Every key of `account`, with the account's row locked until the
/// transaction ends: key changes in one account take the lock in turn, so two
/// of them cannot each see the other's key as the one that remains.
async fn lock_account_keys(
    tx: &deadpool_postgres::Transaction<'_>,
    account: AccountId,
) -> StoreResult<Vec<ApiKey>> {
    execute(
        tx,
        "SELECT id FROM accounts WHERE id = $1 FOR UPDATE",
        &[&account],
    )
    .await?;
    tx.query(
        &format!("SELECT {KEY_COLS} FROM api_keys WHERE account_id = $1"),
        &[&account],
    )
    .await
    .map_err(map_pg)?
    .iter()
    .map(|r| key_row(r).map(|(k, _)| k))
    .collect()
}

/// The next id of `kind` in `account`'s own numbering (`model::id_range`).
/// The counter row is locked by the update until the caller's transaction
/// ends, so replicas never give the same number twice; the first number
/// continues above any id already in the account's range.
async fn next_id<C: GenericClient>(c: &C, account: AccountId, kind: IdKind) -> StoreResult<i64> {
    let (base, end) = id_range(account);
    execute(
        c,
        &format!(
            "INSERT INTO id_counters (account_id, kind, next)
             SELECT $1, $2, COALESCE(MAX(id), $3) - $3 FROM {} WHERE id > $3 AND id <= $4
             ON CONFLICT (account_id, kind) DO NOTHING",
            kind.table()
        ),
        &[&account, &kind.name(), &base, &end],
    )
    .await?;
    let row = query_one(
        c,
        "UPDATE id_counters SET next = next + 1 WHERE account_id = $1 AND kind = $2 RETURNING next",
        &[&account, &kind.name()],
    )
    .await?;
    let next: i64 = col(&row, 0)?;
    if base + next >= end || base + next > thetazero_core::model::MAX_ID {
        return Err(StoreError::Conflict(format!(
            "this account has used every {} id",
            kind.name()
        )));
    }
    Ok(base + next)
}

async fn insert_key<C: GenericClient>(c: &C, key: &NewKey, now: i64) -> StoreResult<ApiKey> {
    let id = KeyId::new(next_id(c, key.account_id, IdKind::Key).await?);
    let row = query_one(
        c,
        "INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes, is_owner, created_at, created_by)
         OVERRIDING SYSTEM VALUE
         VALUES ($9, $1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            &key.account_id,
            &key.name,
            &key.prefix,
            &&key.hash[..],
            &scopes_text(&key.scopes),
            &key.is_owner,
            &now,
            &key.created_by,
            &id,
        ],
    )
    .await?;
    Ok(ApiKey {
        id: col(&row, 0)?,
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

async fn insert_account<C: GenericClient>(c: &C, name: &str, now: i64) -> StoreResult<Account> {
    let row = query_one(
        c,
        "INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING id",
        &[&name, &now],
    )
    .await?;
    Ok(Account {
        id: col(&row, 0)?,
        name: name.to_string(),
        created_at: from_micros(now),
    })
}

async fn anchor_query<C: GenericClient>(
    c: &C,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<AnchorRecord>> {
    query(
        c,
        &format!(
            "SELECT checkpoint_size, kind, status, external_ref, detail, failures, retryable,
             updated_at FROM checkpoint_anchors {filter}"
        ),
        params,
    )
    .await?
    .iter()
    .map(|r| {
        let detail: String = col(r, 4)?;
        Ok(AnchorRecord {
            checkpoint_size: col::<i64>(r, 0)? as u64,
            kind: col(r, 1)?,
            status: col(r, 2)?,
            external_ref: col(r, 3)?,
            // As SQLite does: a detail that does not parse reads as null
            // rather than hiding the anchor.
            detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            failures: u32::try_from(col::<i64>(r, 5)?).unwrap_or(u32::MAX),
            retryable: col(r, 6)?,
            updated_at: from_micros(col(r, 7)?),
        })
    })
    .collect()
}

/// Appends the events a mutation's audit closure produced, inside the
/// mutation's transaction: they commit with it or not at all.
async fn log(tx: &deadpool_postgres::Transaction<'_>, events: Vec<AuditEvent>) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let refs: Vec<&AuditEvent> = events.iter().collect();
    audit::append_in(tx, &refs).await?;
    Ok(())
}

/// The single placement of a one-event append.
/// Inserts an execution: `running` with no outcome (its start), or with its
/// outcome when the whole run is recorded at once.
pub(crate) async fn insert_execution<C: GenericClient>(
    c: &C,
    id: ExecutionId,
    new: &NewExecution,
    outcome: Option<&ExecutionOutcome>,
) -> StoreResult<Execution> {
    let now = now_micros();
    let row = query_one(
        c,
        &format!(
            "INSERT INTO executions (id, account_id, agent_id, agent_version, code_sha256, key_id,
             parent_execution_id, status, input, output, report, violation_count, was_terminated,
             duration_ms, started_at, finished_at)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             RETURNING {EXECUTION_COLS}"
        ),
        &[
            &id,
            &new.account_id,
            &new.agent_id,
            &new.agent_version,
            &new.code_sha256,
            &new.key_id,
            &new.parent_execution_id,
            &outcome.map_or("running", |o| o.status.as_str()),
            &new.input.to_string(),
            &outcome.and_then(|o| o.output.as_ref().map(|v| v.to_string())),
            &outcome.map_or_else(|| "{}".to_string(), |o| o.report.to_string()),
            &outcome.map_or(0, |o| o.violation_count as i64),
            &outcome.is_some_and(|o| o.was_terminated),
            &outcome.map_or(0, |o| o.duration_ms as i64),
            &now,
            &outcome.map(|_| now),
        ],
    )
    .await?;
    execution_row(&row)
}

/// Ends a running execution; `None` when it is unknown or already ended
/// (the `status = 'running'` guard makes the first finisher win).
pub(crate) async fn end_execution<C: GenericClient>(
    c: &C,
    account: AccountId,
    id: ExecutionId,
    outcome: &ExecutionOutcome,
) -> StoreResult<Option<Execution>> {
    query_opt(
        c,
        &format!(
            "UPDATE executions SET status = $1, output = $2, report = $3, violation_count = $4,
             was_terminated = $5, duration_ms = $6, finished_at = $7
             WHERE id = $8 AND account_id = $9 AND status = 'running'
             RETURNING {EXECUTION_COLS}"
        ),
        &[
            &outcome.status.as_str(),
            &outcome.output.as_ref().map(|o| o.to_string()),
            &outcome.report.to_string(),
            &(outcome.violation_count as i64),
            &outcome.was_terminated,
            &(outcome.duration_ms as i64),
            &now_micros(),
            &id,
            &account,
        ],
    )
    .await?
    .as_ref()
    .map(execution_row)
    .transpose()
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl Store for PgStore {
    async fn bootstrap(&self, account_name: &str, key: NewKey) -> StoreResult<Option<Bootstrap>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // This mode conflicts with itself and with inserts, so two replicas
        // bootstrapping at once (or an account created meanwhile) wait for
        // each other and exactly one sees an empty table.
        tx.batch_execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(map_pg)?;
        let existing: i64 = col(
            &query_one(&tx, "SELECT COUNT(*) FROM accounts", &[]).await?,
            0,
        )?;
        if existing > 0 {
            return Ok(None);
        }
        let now = now_micros();
        let account = insert_account(&tx, account_name, now).await?;
        let key = insert_key(
            &tx,
            &NewKey {
                account_id: account.id,
                ..key
            },
            now,
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO deployment (key, value) VALUES ('first_account_id', $1)",
            &[&account.id.to_string()],
        )
        .await?;
        crate::commit(tx).await?;
        Ok(Some(Bootstrap { account, key }))
    }

    async fn create_account_audited(
        &self,
        name: &str,
        owner: Option<NewKey>,
        audit: Audit<(Account, Option<ApiKey>)>,
    ) -> StoreResult<(Account, Option<ApiKey>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let now = now_micros();
        let account = insert_account(&tx, name, now).await?;
        let key = match owner {
            Some(k) => Some(
                insert_key(
                    &tx,
                    &NewKey {
                        account_id: account.id,
                        ..k
                    },
                    now,
                )
                .await?,
            ),
            None => None,
        };
        let result = (account, key);
        log(&tx, audit(&result)).await?;
        crate::commit(tx).await?;
        Ok(result)
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(account_row)
        .transpose()
    }

    async fn first_account_id(&self) -> StoreResult<Option<AccountId>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT value FROM deployment WHERE key = 'first_account_id'",
            &[],
        )
        .await?;
        let value: Option<String> = row.as_ref().map(|r| col(r, 0)).transpose()?;
        Ok(value.and_then(|v| v.parse().ok()).map(AccountId::new))
    }

    async fn create_permission_request_audited(
        &self,
        new: NewPermissionRequest,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<PermissionRequest> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // With a limit, the agent's row is locked until the insert
        // commits, so concurrent requests for one agent count one after the
        // other (NO KEY UPDATE: rows that merely reference the agent are
        // not held up).
        let owned = query_opt(
            &tx,
            if new.pending_limit.is_some() {
                "SELECT id FROM agents WHERE id = $1 AND account_id = $2 FOR NO KEY UPDATE"
            } else {
                "SELECT id FROM agents WHERE id = $1 AND account_id = $2"
            },
            &[&new.agent_id, &new.account_id],
        )
        .await?;
        if owned.is_none() {
            return Err(StoreError::Conflict("agent no longer exists".into()));
        }
        if let Some(limit) = new.pending_limit {
            // Overdue requests not yet marked expired do not count.
            let row = query_one(
                &tx,
                "SELECT COUNT(*) FROM permission_requests
                 WHERE account_id = $1 AND agent_id = $2 AND status = 'pending' AND expires_at > $3",
                &[&new.account_id, &new.agent_id, &now_micros()],
            )
            .await?;
            let open: i64 = col(&row, 0)?;
            let open = open.max(0) as u64;
            if open >= limit {
                return Err(StoreError::PendingLimit { limit, open });
            }
        }
        let id = PermissionRequestId::new(
            next_id(&tx, new.account_id, IdKind::PermissionRequest).await?,
        );
        let row = query_one(
            &tx,
            &format!(
                "INSERT INTO permission_requests (id, account_id, agent_id, requested_by, grant_json, justification,
                 status, expires_at, created_at, code_sha256) OVERRIDING SYSTEM VALUE
                 VALUES ($9, $1, $2, $3, $4, $5, 'pending', $6, $7, $8)
                 RETURNING {REQUEST_COLS}"
            ),
            &[
                &new.account_id,
                &new.agent_id,
                &new.requested_by,
                &new.grant.to_string(),
                &new.justification,
                &to_micros(new.expires_at),
                &now_micros(),
                &new.code_sha256,
                &id,
            ],
        )
        .await?;
        let request = request_row(&row)?;
        log(&tx, audit(&request)).await?;
        crate::commit(tx).await?;
        Ok(request)
    }

    async fn permission_requests(
        &self,
        account: AccountId,
        id: Option<PermissionRequestId>,
        status: Option<PermissionRequestStatus>,
        agent: Option<AgentId>,
        limit: u64,
    ) -> StoreResult<Vec<PermissionRequest>> {
        let client = self.client().await?;
        let limit = limit.min(i64::MAX as u64) as i64;
        let rows = query(
            &client,
            &format!(
                "SELECT {REQUEST_COLS} FROM permission_requests WHERE account_id = $1
                 AND ($2::BIGINT IS NULL OR id = $2) AND ($3::TEXT IS NULL OR status = $3)
                 AND ($4::BIGINT IS NULL OR agent_id = $4) ORDER BY id DESC LIMIT $5"
            ),
            &[&account, &id, &status, &agent, &limit],
        )
        .await?;
        rows.iter().map(request_row).collect()
    }

    async fn decide_permission_request_audited(
        &self,
        account: AccountId,
        id: PermissionRequestId,
        decision: RequestDecision,
        audit: Audit<PermissionRequest>,
    ) -> StoreResult<Option<PermissionRequest>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let row = query_opt(
            &tx,
            &format!(
                "UPDATE permission_requests SET status = $1, decided_by = $2, decision_reason = $3,
                 decided_at = $4, grant_expires_at = $5
                 WHERE account_id = $6 AND id = $7 AND status = 'pending' RETURNING {REQUEST_COLS}"
            ),
            &[
                &decision.status,
                &decision.decided_by,
                &decision.reason,
                &now_micros(),
                &decision.grant_expires_at.map(to_micros),
                &account,
                &id,
            ],
        )
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let request = request_row(&row)?;
        log(&tx, audit(&request)).await?;
        crate::commit(tx).await?;
        Ok(Some(request))
    }

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT value FROM deployment WHERE key = $1",
            &[&key],
        )
        .await?;
        row.as_ref().map(|r| col(r, 0)).transpose()
    }

    async fn put_setting_audited(
        &self,
        key: &str,
        value: Option<String>,
        audit: Audit<()>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        match &value {
            Some(v) => tx
                .execute(
                    "INSERT INTO deployment (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, v],
                )
                .await
                .map_err(map_pg)?,
            None => tx
                .execute("DELETE FROM deployment WHERE key = $1", &[&key])
                .await
                .map_err(map_pg)?,
        };
        log(&tx, audit(&())).await?;
        crate::commit(tx).await?;
        Ok(())
    }

    async fn create_key_audited(&self, key: NewKey, audit: Audit<ApiKey>) -> StoreResult<ApiKey> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let key = insert_key(&tx, &key, now_micros()).await?;
        log(&tx, audit(&key)).await?;
        crate::commit(tx).await?;
        Ok(key)
    }

    async fn find_key_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<(ApiKey, [u8; 32])>> {
        let client = self.client().await?;
        let found = query_opt(
            &client,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = $1"),
            &[&&hash[..]],
        )
        .await?
        .as_ref()
        .map(key_row)
        .transpose()?;
        Ok(found.and_then(|(key, stored)| {
            let stored: [u8; 32] = stored.try_into().ok()?;
            Some((key, stored))
        }))
    }

    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<ApiKey>> {
        let client = self.client().await?;
        query(
            &client,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE account_id = $1 ORDER BY id"),
            &[&account],
        )
        .await?
        .iter()
        .map(|r| key_row(r).map(|(k, _)| k))
        .collect()
    }

    async fn get_key(&self, account: AccountId, id: KeyId) -> StoreResult<Option<ApiKey>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1 AND account_id = $2"),
            &[&id, &account],
        )
        .await?
        .as_ref()
        .map(|r| key_row(r).map(|(k, _)| k))
        .transpose()
    }

    async fn revoke_key_audited(
        &self,
        account: AccountId,
        id: KeyId,
        audit: Audit<ApiKey>,
    ) -> StoreResult<Option<ApiKey>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let keys = lock_account_keys(&tx, account).await?;
        if let Some(target) = keys.iter().find(|k| k.id == id) {
            let mut revoked = target.clone();
            revoked.revoked_at = Some(OffsetDateTime::now_utc());
            check_key_change(&keys, &revoked)?;
        }
        // COALESCE keeps the first revocation time; one statement, so two
        // concurrent revocations cannot both think they were first.
        let key = query_opt(
            &tx,
            &format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
                 WHERE id = $2 AND account_id = $3 RETURNING {KEY_COLS}"
            ),
            &[&now_micros(), &id, &account],
        )
        .await?
        .as_ref()
        .map(|r| key_row(r).map(|(k, _)| k))
        .transpose()?;
        if let Some(key) = &key {
            log(&tx, audit(key)).await?;
        }
        crate::commit(tx).await?;
        Ok(key)
    }

    async fn set_key_scopes_audited(
        &self,
        account: AccountId,
        id: KeyId,
        scopes: Vec<KeyScope>,
        audit: Audit<(ApiKey, ApiKey)>,
    ) -> StoreResult<Option<ApiKey>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let keys = lock_account_keys(&tx, account).await?;
        let Some(before) = keys.iter().find(|k| k.id == id).cloned() else {
            return Ok(None);
        };
        if let Some(refusal) = scope_change_refusal(&before) {
            return Err(refusal);
        }
        let mut after = before.clone();
        after.scopes = scopes;
        check_key_change(&keys, &after)?;
        execute(
            &tx,
            "UPDATE api_keys SET scopes = $1 WHERE id = $2 AND account_id = $3",
            &[&scopes_text(&after.scopes), &id, &account],
        )
        .await?;
        log(&tx, audit(&(before, after.clone()))).await?;
        tx.commit().await.map_err(map_pg)?;
        Ok(Some(after))
    }

    async fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
            &[&to_micros(at), &id],
        )
        .await?;
        Ok(())
    }

    async fn upsert_agent_audited(
        &self,
        account: AccountId,
        spec: AgentSpec,
        audit: Audit<(Agent, bool)>,
    ) -> StoreResult<(Agent, bool)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let now = now_micros();
        let config = spec.config.to_stored_json().to_string();
        let permissions = spec.permissions.to_json().to_string();
        // Taken whether or not the name exists (a re-registration leaves a
        // gap in the account's numbering, which is harmless).
        let id = AgentId::new(next_id(&tx, account, IdKind::Agent).await?);
        // One statement, so concurrent registrations of one name cannot both
        // insert. `xmax = 0` holds exactly for a row this statement inserted
        // (an updated row carries the updating transaction's id).
        let row = query_one(
            &tx,
            &format!(
                "INSERT INTO agents (id, account_id, name, version, description, status, entry_code,
                 config, permissions, created_at, updated_at)
                 OVERRIDING SYSTEM VALUE
                 VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 ON CONFLICT (account_id, name) DO UPDATE SET version = excluded.version,
                 description = excluded.description,
                 status = CASE WHEN agents.status = 'killed' THEN 'killed' ELSE excluded.status END,
                 entry_code = excluded.entry_code, config = excluded.config,
                 permissions = excluded.permissions, updated_at = excluded.updated_at
                 RETURNING {AGENT_COLS}, (xmax = 0) AS inserted"
            ),
            &[
                &account,
                &spec.name,
                &spec.version,
                &spec.description,
                &spec.status.as_str(),
                &spec.entry_code,
                &config,
                &permissions,
                &now,
                &id,
            ],
        )
        .await?;
        let created: bool = col(&row, 11)?;
        let result = (agent_row(&row)?, created);
        log(&tx, audit(&result)).await?;
        crate::commit(tx).await?;
        Ok(result)
    }

    async fn list_agents(&self, account: AccountId, page: PageRequest) -> StoreResult<Page<Agent>> {
        let client = self.client().await?;
        let total: i64 = col(
            &query_one(
                &client,
                "SELECT COUNT(*) FROM agents WHERE account_id = $1",
                &[&account],
            )
            .await?,
            0,
        )?;
        let items = query(
            &client,
            &format!(
                "SELECT {AGENT_COLS} FROM agents WHERE account_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
            ),
            &[&account, &clamp(page.limit), &clamp(page.offset())],
        )
        .await?
        .iter()
        .map(agent_row)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            total: total as u64,
        })
    }

    async fn get_agent(&self, account: AccountId, id: AgentId) -> StoreResult<Option<Agent>> {
        get_agent_in(&self.client().await?, account, id, false).await
    }

    async fn get_agent_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Agent>> {
        let client = self.client().await?;
        let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE account_id = $1 AND name = $2");
        query_opt(&client, &sql, &[&account, &name])
            .await?
            .as_ref()
            .map(agent_row)
            .transpose()
    }

    async fn update_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        patch: AgentPatch,
        audit: Audit<Agent>,
    ) -> StoreResult<Option<Agent>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // FOR UPDATE: two concurrent patches apply one after the other instead
        // of the second overwriting the first with stale fields.
        let Some(current) = get_agent_in(&tx, account, id, true).await? else {
            return Ok(None);
        };
        let version = patch.version.unwrap_or(current.version);
        let description = patch.description.unwrap_or(current.description);
        let status = patch.status.unwrap_or(current.status);
        let entry_code = patch.entry_code.unwrap_or(current.entry_code);
        let config = patch.config.unwrap_or(current.config);
        let permissions = patch.permissions.unwrap_or(current.permissions);
        let row = query_one(
            &tx,
            &format!(
                "UPDATE agents SET version = $1, description = $2, status = $3, entry_code = $4,
                 config = $5, permissions = $6, updated_at = $7 WHERE id = $8 AND account_id = $9
                 RETURNING {AGENT_COLS}"
            ),
            &[
                &version,
                &description,
                &status.as_str(),
                &entry_code,
                &config.to_stored_json().to_string(),
                &permissions.to_json().to_string(),
                &now_micros(),
                &id,
                &account,
            ],
        )
        .await?;
        let agent = agent_row(&row)?;
        log(&tx, audit(&agent)).await?;
        crate::commit(tx).await?;
        Ok(Some(agent))
    }

    async fn delete_agent_audited(
        &self,
        account: AccountId,
        id: AgentId,
        audit: Audit<AgentId>,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let n = execute(
            &tx,
            "DELETE FROM agents WHERE id = $1 AND account_id = $2",
            &[&id, &account],
        )
        .await?;
        if n > 0 {
            log(&tx, audit(&id)).await?;
        }
        crate::commit(tx).await?;
        Ok(n > 0)
    }

    async fn put_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        value: &Value,
        audit: Audit<ContextEntry>,
    ) -> StoreResult<ContextEntry> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // FOR KEY SHARE keeps the agent from being deleted until this commits.
        let owned = query_opt(
            &tx,
            "SELECT id FROM agents WHERE id = $1 AND account_id = $2 FOR KEY SHARE",
            &[&agent, &account],
        )
        .await?;
        if owned.is_none() {
            return Err(StoreError::Conflict("agent no longer exists".into()));
        }
        let now = now_micros();
        execute(
            &tx,
            "INSERT INTO agent_context (agent_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[&agent, &key, &value.to_string(), &now],
        )
        .await?;
        let entry = ContextEntry {
            key: key.to_string(),
            value: value.clone(),
            updated_at: from_micros(now),
        };
        log(&tx, audit(&entry)).await?;
        crate::commit(tx).await?;
        Ok(entry)
    }

    async fn get_context(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
    ) -> StoreResult<Option<ContextEntry>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT c.value, c.updated_at FROM agent_context c JOIN agents a ON a.id = c.agent_id
             WHERE c.agent_id = $1 AND a.account_id = $2 AND c.key = $3",
            &[&agent, &account, &key],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let value: String = col(&row, 0)?;
        Ok(Some(ContextEntry {
            key: key.to_string(),
            value: serde_json::from_str(&value)
                .map_err(|_| StoreError::corrupt("context value"))?,
            updated_at: from_micros(col(&row, 1)?),
        }))
    }

    async fn delete_context_audited(
        &self,
        account: AccountId,
        agent: AgentId,
        key: &str,
        audit: Audit<String>,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let n = execute(
            &tx,
            "DELETE FROM agent_context WHERE agent_id = $1 AND key = $2
             AND agent_id IN (SELECT id FROM agents WHERE account_id = $3)",
            &[&agent, &key, &account],
        )
        .await?;
        if n > 0 {
            log(&tx, audit(&key.to_string())).await?;
        }
        crate::commit(tx).await?;
        Ok(n > 0)
    }

    async fn reserve_execution_id(&self, account: AccountId) -> StoreResult<ExecutionId> {
        // Numbered in the account's range by a counter row every replica
        // shares; one that is never used leaves a gap.
        let client = self.client().await?;
        next_id(&client, account, IdKind::Execution)
            .await
            .map(ExecutionId::new)
    }

    async fn create_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord)> {
        let (execution, mut records) = self
            .audit
            .execution(audit::ExecWrite::Create { id, new }, vec![started])
            .await?;
        let execution = execution.ok_or_else(|| StoreError::Internal("no execution row".into()))?;
        Ok((execution, records.remove(0)))
    }

    async fn finish_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<Option<(Execution, AuditRecord)>> {
        let (execution, mut records) = self
            .audit
            .execution(
                audit::ExecWrite::Finish {
                    account,
                    id,
                    outcome,
                },
                vec![ended],
            )
            .await?;
        // The first finisher wins; a later one records nothing.
        Ok(execution.map(|e| (e, records.remove(0))))
    }

    async fn record_execution(
        &self,
        id: ExecutionId,
        new: NewExecution,
        started: AuditEvent,
        outcome: ExecutionOutcome,
        ended: AuditEvent,
    ) -> StoreResult<(Execution, AuditRecord, AuditRecord)> {
        let (execution, mut records) = self
            .audit
            .execution(
                audit::ExecWrite::Record { id, new, outcome },
                vec![started, ended],
            )
            .await?;
        let execution = execution.ok_or_else(|| StoreError::Internal("no execution row".into()))?;
        let last = records.pop();
        let first = records.pop();
        match (first, last) {
            (Some(first), Some(last)) => Ok((execution, first, last)),
            _ => Err(StoreError::Internal(
                "an execution was recorded without its events".into(),
            )),
        }
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
    ) -> StoreResult<Option<Execution>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {EXECUTION_COLS} FROM executions WHERE id = $1 AND account_id = $2"),
            &[&id, &account],
        )
        .await?
        .as_ref()
        .map(execution_row)
        .transpose()
    }

    async fn list_executions(
        &self,
        account: AccountId,
        agent: AgentId,
        status: Option<ExecutionStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<Execution>> {
        let client = self.client().await?;
        let status = status.map(|s| s.as_str());
        let total: i64 = col(
            &query_one(
                &client,
                "SELECT COUNT(*) FROM executions WHERE account_id = $1 AND agent_id = $2
                 AND ($3::text IS NULL OR status = $3)",
                &[&account, &agent, &status],
            )
            .await?,
            0,
        )?;
        let items = query(
            &client,
            &format!(
                "SELECT {EXECUTION_COLS} FROM executions WHERE account_id = $1 AND agent_id = $2
                 AND ($3::text IS NULL OR status = $3) ORDER BY id DESC LIMIT $4 OFFSET $5"
            ),
            &[
                &account,
                &agent,
                &status,
                &clamp(page.limit),
                &clamp(page.offset()),
            ],
        )
        .await?
        .iter()
        .map(execution_row)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            total: total as u64,
        })
    }

    async fn storage_get(&self, account: AccountId, key: &str) -> StoreResult<Option<Value>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT value FROM account_storage WHERE account_id = $1 AND key = $2",
            &[&account, &key],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let value: String = col(&row, 0)?;
        serde_json::from_str(&value)
            .map(Some)
            .map_err(|_| StoreError::corrupt("storage value"))
    }

    async fn account_usage(&self, account: AccountId) -> StoreResult<AccountUsage> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT
               (SELECT COALESCE(SUM(octet_length(c.key) + octet_length(c.value)), 0)::BIGINT
                  FROM agent_context c JOIN agents a ON a.id = c.agent_id WHERE a.account_id = $1),
               (SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::BIGINT
                  FROM account_storage WHERE account_id = $1)",
            &[&account],
        )
        .await?;
        let Some(row) = row else {
            return Ok(AccountUsage::default());
        };
        let context_bytes: i64 = col(&row, 0)?;
        let storage_bytes: i64 = col(&row, 1)?;
        Ok(AccountUsage {
            context_bytes: context_bytes.max(0) as u64,
            storage_bytes: storage_bytes.max(0) as u64,
        })
    }

    async fn storage_put(&self, account: AccountId, key: &str, value: &Value) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO account_storage (account_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[&account, &key, &value.to_string(), &now_micros()],
        )
        .await?;
        Ok(())
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.audit.append(events).await
    }

    async fn query_audit(
        &self,
        account: AccountId,
        query_: &AuditQuery,
    ) -> StoreResult<Page<AuditRecord>> {
        let mut clauses = vec!["e.account_id = $1".to_string()];
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(account)];
        let mut push = |clause: &str, arg: Box<dyn ToSql + Sync + Send>| {
            args.push(arg);
            clauses.push(clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(from) = query_.from {
            push("e.timestamp >= ?", Box::new(to_micros(from)));
        }
        if let Some(to) = query_.to {
            push("e.timestamp <= ?", Box::new(to_micros(to)));
        }
        if !query_.action_types.is_empty() {
            push(
                "e.action_type = ANY(?)",
                Box::new(query_.action_types.clone()),
            );
        }
        if let Some(agent) = query_.agent_id {
            push("e.agent_id = ?", Box::new(agent));
        }
        if let Some(execution) = query_.execution_id {
            push("e.execution_id = ?", Box::new(execution));
        }
        if query_.violations_only {
            clauses.push("e.is_violation".into());
        }
        let filter = clauses.join(" AND ");
        let client = self.client().await?;
        let refs: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let total: i64 = col(
            &query_one(
                &client,
                &format!("SELECT COUNT(*) FROM audit_events e WHERE {filter}"),
                &refs,
            )
            .await?,
            0,
        )?;
        let mut page_filter = filter;
        let after = query_.after.map(clamp);
        let limit = clamp(query_.limit);
        let mut page_args = refs;
        if let Some(after) = &after {
            page_args.push(after);
            page_filter.push_str(&format!(" AND e.leaf_index > ${}", page_args.len()));
        }
        page_args.push(&limit);
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM {AUDIT_FROM} WHERE {page_filter} ORDER BY e.leaf_index LIMIT ${}",
            page_args.len()
        );
        let items = query(&client, &sql, &page_args)
            .await?
            .iter()
            .map(audit_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            total: total as u64,
        })
    }

    async fn audit_record(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<AuditRecord>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {AUDIT_COLS} FROM {AUDIT_FROM} WHERE e.id = $1 AND e.account_id = $2"),
            &[&id, &account],
        )
        .await?
        .as_ref()
        .map(audit_row)
        .transpose()
    }

    async fn audit_payload(
        &self,
        account: AccountId,
        id: AuditRecordId,
    ) -> StoreResult<Option<Value>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT p.payload FROM audit_payloads p JOIN audit_events e ON e.id = p.audit_id
             WHERE p.audit_id = $1 AND e.account_id = $2",
            &[&id, &account],
        )
        .await?;
        let text: Option<String> = row.as_ref().map(|r| col::<String>(r, 0)).transpose()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn audit_log_size(&self, account: AccountId) -> StoreResult<u64> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT size FROM audit_log_heads WHERE account_id = $1",
            &[&account],
        )
        .await?;
        Ok(row
            .as_ref()
            .map(|r| col::<i64>(r, 0))
            .transpose()?
            .unwrap_or(0) as u64)
    }

    async fn audit_leaves(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        let client = self.client().await?;
        query(
            &client,
            "SELECT leaf_index, leaf_bytes FROM audit_leaves WHERE account_id = $1
             AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index LIMIT $4",
            &[&account, &clamp(from), &clamp(to), &clamp(limit)],
        )
        .await?
        .iter()
        .map(|r| Ok((col::<i64>(r, 0)? as u64, col(r, 1)?)))
        .collect()
    }

    async fn audit_hashes(
        &self,
        account: AccountId,
        indexes: Vec<u64>,
    ) -> StoreResult<Vec<[u8; 32]>> {
        let client = self.client().await?;
        audit::read_hashes(&client, account, &indexes).await
    }

    async fn store_checkpoint(&self, account: AccountId, size: u64, note: &str) -> StoreResult<()> {
        let client = self.client().await?;
        // DO NOTHING: the first note signed for a size is the one that stays.
        execute(
            &client,
            "INSERT INTO audit_checkpoints (account_id, size, note, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&account, &clamp(size), &note, &now_micros()],
        )
        .await?;
        Ok(())
    }

    async fn latest_checkpoint(&self, account: AccountId) -> StoreResult<Option<StoredCheckpoint>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!(
                "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE account_id = $1
                 ORDER BY size DESC LIMIT 1"
            ),
            &[&account],
        )
        .await?
        .as_ref()
        .map(checkpoint_row)
        .transpose()
    }

    async fn checkpoint_covering(
        &self,
        account: AccountId,
        size: u64,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!(
                "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE account_id = $1
                 AND size >= $2 ORDER BY size LIMIT 1"
            ),
            &[&account, &clamp(size)],
        )
        .await?
        .as_ref()
        .map(checkpoint_row)
        .transpose()
    }

    async fn checkpoints(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let client = self.client().await?;
        query(
            &client,
            &format!(
                "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE account_id = $1
                 AND size >= $2 AND size <= $3 ORDER BY size LIMIT $4"
            ),
            &[&account, &clamp(from), &clamp(to), &clamp(limit)],
        )
        .await?
        .iter()
        .map(checkpoint_row)
        .collect()
    }

    async fn logs_needing_checkpoint(&self) -> StoreResult<Vec<(AccountId, u64, u64)>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT h.account_id, h.size,
                    COALESCE((SELECT MAX(size) FROM audit_checkpoints c
                              WHERE c.account_id = h.account_id), 0)
             FROM audit_log_heads h",
            &[],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let (account, size, checkpoint): (AccountId, i64, i64) =
                (col(r, 0)?, col(r, 1)?, col(r, 2)?);
            if size > checkpoint {
                out.push((account, size as u64, checkpoint as u64));
            }
        }
        Ok(out)
    }

    async fn pending_permission_requests_total(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT COUNT(*) FROM permission_requests WHERE status = 'pending' AND expires_at > $1",
            &[&now_micros()],
        )
        .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    }

    async fn audit_logs(&self) -> StoreResult<Vec<(AccountId, u64)>> {
        let client = self.client().await?;
        query(
            &client,
            "SELECT account_id, size FROM audit_log_heads WHERE size > 0 ORDER BY account_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((col(r, 0)?, col::<i64>(r, 1)? as u64)))
        .collect()
    }

    async fn put_anchor(&self, account: AccountId, anchor: AnchorRecord) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO checkpoint_anchors (account_id, checkpoint_size, kind, status, external_ref,
             detail, failures, retryable, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (account_id, checkpoint_size, kind) DO UPDATE SET status = excluded.status,
             external_ref = excluded.external_ref, detail = excluded.detail,
             failures = excluded.failures, retryable = excluded.retryable,
             updated_at = excluded.updated_at",
            &[
                &account,
                &clamp(anchor.checkpoint_size),
                &anchor.kind,
                &anchor.status,
                &anchor.external_ref,
                &anchor.detail.to_string(),
                &i64::from(anchor.failures),
                &anchor.retryable,
                &to_micros(anchor.updated_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn anchors(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
    ) -> StoreResult<Vec<AnchorRecord>> {
        let client = self.client().await?;
        anchor_query(
            &client,
            "WHERE account_id = $1 AND checkpoint_size >= $2 AND checkpoint_size <= $3
             ORDER BY checkpoint_size, kind",
            &[&account, &clamp(from), &clamp(to)],
        )
        .await
    }

    async fn last_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>> {
        let client = self.client().await?;
        anchor_query(
            &client,
            "WHERE account_id = $1 AND kind = $2
             ORDER BY updated_at DESC, checkpoint_size DESC LIMIT 1",
            &[&account, &kind],
        )
        .await
        .map(|mut v| v.pop())
    }

    async fn last_confirmed_anchor(
        &self,
        account: AccountId,
        kind: &str,
    ) -> StoreResult<Option<AnchorRecord>> {
        let client = self.client().await?;
        anchor_query(
            &client,
            "WHERE account_id = $1 AND kind = $2 AND status = 'confirmed'
             ORDER BY checkpoint_size DESC LIMIT 1",
            &[&account, &kind],
        )
        .await
        .map(|mut v| v.pop())
    }

    async fn rate_acquire(&self, limit: &RateLimit) -> StoreResult<RateDecision> {
        if limit.limit == 0 {
            return Ok(RateDecision::Refused {
                retry_after: limit.window,
            });
        }
        let interval = interval_us(limit.limit, limit.window);
        let window = limit.window.as_micros() as i64;
        let client = self.client().await?;
        // GCRA in one statement on the database's clock: EXCLUDED.tat_us is
        // now + interval, so GREATEST(...) is max(tat, now) + interval.
        let admitted = client
            .query_opt(
                "INSERT INTO rate_limits AS r (key, tat_us)
                 VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + $2)
                 ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(r.tat_us + $2, EXCLUDED.tat_us)
                 WHERE GREATEST(r.tat_us + $2, EXCLUDED.tat_us) - (EXCLUDED.tat_us - $2) <= $3
                 RETURNING tat_us",
                &[&limit.key, &interval, &window],
            )
            .await
            .map_err(map_pg)?;
        if admitted.is_some() {
            return Ok(RateDecision::Admitted);
        }
        let wait: i64 = client
            .query_one(
                "SELECT GREATEST(tat_us, now_us) + $2 - $3 - now_us FROM rate_limits,
                 (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us) n
                 WHERE key = $1",
                &[&limit.key, &interval, &window],
            )
            .await
            .map_err(map_pg)?
            .get(0);
        Ok(RateDecision::Refused {
            retry_after: std::time::Duration::from_micros(wait.max(0) as u64),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(map_pg)?;
        Ok(())
    }
}
