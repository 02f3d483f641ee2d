//! The account audit logs on SQLite: appending events as Merkle leaves inside
//! the caller's transaction, and reading leaves, hashes and checkpoints back.
//!
//! Leaf indices come from the `audit_log_heads` counter row updated in the
//! same transaction; interior hashes are computed by `thetazero-audit` from
//! the hashes already stored and inserted alongside the leaf. Nothing here
//! ever updates or deletes an audit row.

use rusqlite::{params, Connection, OptionalExtension};

use crate::{execute_cached, query_row_cached};
use thetazero_audit::merkle::{self, Hash, HashReader};
use thetazero_core::audit::{
    commit_payload, leaf_bytes, AuditEvent, AuditRecord, StoredCheckpoint,
};
use thetazero_core::model::{AccountId, AgentId, AuditRecordId, ExecutionId, KeyId};
use thetazero_core::store::{StoreError, StoreResult};
use time::OffsetDateTime;

use crate::{from_micros, map_err, now_micros};

/// Reads interior hashes of one account's log inside the current transaction.
pub(crate) struct TxHashes<'a> {
    pub conn: &'a Connection,
    pub account: AccountId,
}

impl HashReader for TxHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, merkle::StoreError> {
        read_hashes(self.conn, self.account, indexes)
            .map(|found| found.into_iter().map(Hash).collect())
            .map_err(merkle::StoreError::msg)
    }
}

/// Bits of a leaf's or a stored hash's key that hold its index; the account
/// id is above them (migration `0006_audit_keys`).
const INDEX_BITS: u32 = 40;
const INDEX_MASK: i64 = (1 << INDEX_BITS) - 1;
/// The highest account id whose log the keys can hold.
pub(crate) const MAX_ACCOUNT_ID: i64 = (1 << (63 - INDEX_BITS)) - 1;

/// The key of an account's leaf or stored hash with this index.
fn log_key(account: AccountId, index: u64) -> Result<i64, String> {
    if !(0..=MAX_ACCOUNT_ID).contains(&account.get()) || index > INDEX_MASK as u64 {
        return Err(format!(
            "account {account}, index {index} is outside the audit log's keys"
        ));
    }
    Ok((account.get() << INDEX_BITS) | index as i64)
}

/// The key of index `to`, or past every index of the account when `to` is
/// beyond them (saturating at the last account's last key).
fn key_bound(account: AccountId, to: u64) -> Result<i64, String> {
    Ok(log_key(account, to.min(INDEX_MASK as u64))?
        .saturating_add(i64::from(to > INDEX_MASK as u64)))
}

/// Interior hashes of one account's log by storage index, in one statement
/// (one per count of indexes, cached): an append or a proof reads about
/// log2(size) of them.
fn read_hashes(
    conn: &Connection,
    account: AccountId,
    indexes: &[u64],
) -> Result<Vec<[u8; 32]>, String> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; indexes.len()].join(",");
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT hash_key, hash FROM audit_hashes WHERE hash_key IN ({marks})"
        ))
        .map_err(|e| e.to_string())?;
    let keys = indexes
        .iter()
        .map(|i| log_key(account, *i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = std::collections::HashMap::with_capacity(indexes.len());
    let rows = stmt
        .query_map(rusqlite::params_from_iter(keys), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(|e| e.to_string())?;
    for row in rows {
        let (k, bytes) = row.map_err(|e| e.to_string())?;
        let index = (k & INDEX_MASK) as u64;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("hash {index} is not 32 bytes"))?;
        found.insert(index, hash);
    }
    indexes
        .iter()
        .map(|i| {
            found
                .get(i)
                .copied()
                .ok_or_else(|| format!("hash {i} is not stored"))
        })
        .collect()
}

fn merkle_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("audit log: {e}"))
}

/// An event turned into its leaf, ready to append. Preparing (canonical
/// JSON, hashes, the payload commitment) needs no database, so callers do it
/// before they reach the single writer.
pub(crate) struct Prepared {
    event: AuditEvent,
    at: i64,
    bytes: Vec<u8>,
    leaf_hash: [u8; 32],
    payload: Option<String>,
    salt: [u8; 32],
}

pub(crate) fn prepare(event: AuditEvent) -> StoreResult<Prepared> {
    let at = now_micros();
    let commitment = commit_payload(&event.payload);
    let bytes = leaf_bytes(&event, from_micros(at), commitment.commitment)
        .map_err(|e| StoreError::Internal(format!("event cannot become a leaf: {e}")))?;
    Ok(Prepared {
        leaf_hash: merkle::leaf_hash(&bytes).0,
        event,
        at,
        bytes,
        payload: commitment.text,
        salt: commitment.salt,
    })
}

/// Appends events in order; part of the caller's transaction.
pub(crate) fn append_events(
    conn: &Connection,
    events: Vec<AuditEvent>,
) -> StoreResult<Vec<AuditRecord>> {
    let prepared = events
        .into_iter()
        .map(prepare)
        .collect::<StoreResult<Vec<_>>>()?;
    append_prepared(conn, prepared)
}

/// Appends prepared events in order. Consecutive events of one account share
/// one head update and one Merkle computation.
pub(crate) fn append_prepared(
    conn: &Connection,
    events: Vec<Prepared>,
) -> StoreResult<Vec<AuditRecord>> {
    let mut out = Vec::with_capacity(events.len());
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        let account = first.event.account_id;
        let mut run = vec![first];
        while let Some(next) = events.next_if(|e| e.event.account_id == account) {
            run.push(next);
        }
        append_run(conn, account, run, &mut out)?;
    }
    Ok(out)
}

fn append_run(
    conn: &Connection,
    account: AccountId,
    run: Vec<Prepared>,
    out: &mut Vec<AuditRecord>,
) -> StoreResult<()> {
    let count = run.len() as i64;
    thetazero_core::telemetry::global()
        .audit_appends
        .inc_by(run.len() as u64);
    conn.prepare_cached(
        "INSERT INTO audit_log_heads (account_id, size) VALUES (?1, 0) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![account]))
    .map_err(map_err)?;
    let first: i64 = conn
        .prepare_cached(
            "UPDATE audit_log_heads SET size = size + ?2 WHERE account_id = ?1 RETURNING size - ?2",
        )
        .and_then(|mut s| s.query_row(params![account, count], |r| r.get(0)))
        .map_err(map_err)?;
    let hashes: Vec<Hash> = run.iter().map(|p| Hash(p.leaf_hash)).collect();
    let rows = merkle::append_hashes(first as u64, &hashes, &TxHashes { conn, account })
        .map_err(merkle_err)?;
    let mut insert_event = conn
        .prepare_cached(
            "INSERT INTO audit_events (account_id, leaf_index, timestamp, agent_id, execution_id, key_id,
             action_type, action_category, description, permission_state, is_violation,
             input_summary, output_summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(map_err)?;
    let mut insert_leaf = conn
        .prepare_cached(
            "INSERT INTO audit_leaves (leaf_key, leaf_bytes, leaf_hash) VALUES (?1, ?2, ?3)",
        )
        .map_err(map_err)?;
    let mut insert_payload = conn
        .prepare_cached("INSERT INTO audit_payloads (audit_id, payload) VALUES (?1, ?2)")
        .map_err(map_err)?;
    let mut insert_salt = conn
        .prepare_cached("INSERT INTO audit_payload_salts (audit_id, salt) VALUES (?1, ?2)")
        .map_err(map_err)?;
    for (offset, p) in run.into_iter().enumerate() {
        let index = first + offset as i64;
        let event = p.event;
        insert_event
            .execute(params![
                account,
                index,
                p.at,
                event.agent_id,
                event.execution_id,
                event.key_id,
                event.action_type,
                event.action_category,
                event.description,
                event.permission_state,
                event.is_violation,
                event.input_summary,
                event.output_summary
            ])
            .map_err(map_err)?;
        let id = conn.last_insert_rowid();
        insert_leaf
            .execute(params![
                log_key(account, index as u64).map_err(merkle_err)?,
                p.bytes,
                &p.leaf_hash[..]
            ])
            .map_err(map_err)?;
        if let Some(text) = &p.payload {
            insert_payload.execute(params![id, text]).map_err(map_err)?;
            insert_salt
                .execute(params![id, &p.salt[..]])
                .map_err(map_err)?;
        }
        out.push(AuditRecord {
            id: AuditRecordId::new(id),
            leaf_index: index as u64,
            leaf_hash: p.leaf_hash,
            timestamp: from_micros(p.at),
            event,
        });
    }
    insert_hashes(conn, account, rows)
}

/// Stores the interior hashes an append computed.
fn insert_hashes(
    conn: &Connection,
    account: AccountId,
    rows: Vec<merkle::StoredHash>,
) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached("INSERT INTO audit_hashes (hash_key, hash) VALUES (?1, ?2)")
        .map_err(map_err)?;
    for row in rows {
        insert
            .execute(params![
                log_key(account, row.index).map_err(merkle_err)?,
                &row.hash.0[..]
            ])
            .map_err(map_err)?;
    }
    Ok(())
}

pub(crate) fn leaves(
    conn: &Connection,
    account: AccountId,
    from: u64,
    to: u64,
    limit: u64,
) -> StoreResult<Vec<(u64, Vec<u8>)>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT leaf_index, leaf_bytes FROM audit_leaves
             WHERE leaf_key >= ?1 AND leaf_key < ?2 ORDER BY leaf_key LIMIT ?3",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                key_bound(account, from).map_err(merkle_err)?,
                key_bound(account, to).map_err(merkle_err)?,
                limit.min(i64::MAX as u64) as i64
            ],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
        )
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    Ok(rows)
}

pub(crate) fn hashes(
    conn: &Connection,
    account: AccountId,
    indexes: &[u64],
) -> StoreResult<Vec<[u8; 32]>> {
    read_hashes(conn, account, indexes).map_err(merkle_err)
}

pub(crate) fn log_size(conn: &Connection, account: AccountId) -> StoreResult<u64> {
    let size: Option<i64> = query_row_cached(
        conn,
        "SELECT size FROM audit_log_heads WHERE account_id = ?1",
        params![account],
        |r| r.get(0),
    )
    .optional()
    .map_err(map_err)?;
    Ok(size.unwrap_or(0) as u64)
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0)? as u64,
        note: r.get(1)?,
        created_at: from_micros(r.get(2)?),
    })
}

pub(crate) fn store_checkpoint(
    conn: &Connection,
    account: AccountId,
    size: u64,
    note: &str,
) -> StoreResult<()> {
    execute_cached(
        conn,
        "INSERT INTO audit_checkpoints (account_id, size, note, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        params![account, size as i64, note, now_micros()],
    )
    .map_err(map_err)?;
    Ok(())
}

pub(crate) fn checkpoint_query(
    conn: &Connection,
    sql: &str,
    account: AccountId,
    size: u64,
) -> StoreResult<Option<StoredCheckpoint>> {
    query_row_cached(
        conn,
        sql,
        params![account, size.min(i64::MAX as u64) as i64],
        checkpoint_row,
    )
    .optional()
    .map_err(map_err)
}

pub(crate) fn checkpoints(
    conn: &Connection,
    account: AccountId,
    from: u64,
    to: u64,
    limit: u64,
) -> StoreResult<Vec<StoredCheckpoint>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT size, note, created_at FROM audit_checkpoints WHERE account_id = ?1
             AND size >= ?2 AND size <= ?3 ORDER BY size LIMIT ?4",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                account,
                from.min(i64::MAX as u64) as i64,
                to.min(i64::MAX as u64) as i64,
                limit.min(i64::MAX as u64) as i64
            ],
            checkpoint_row,
        )
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    Ok(rows)
}

pub(crate) fn needing_checkpoint(conn: &Connection) -> StoreResult<Vec<(AccountId, u64, u64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT h.account_id, h.size, COALESCE((SELECT MAX(size) FROM audit_checkpoints c WHERE c.account_id = h.account_id), 0)
             FROM audit_log_heads h",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, AccountId>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    Ok(rows.into_iter().filter(|(_, size, cp)| size > cp).collect())
}

/// An audit event stored before leaves existed.
struct Unlogged {
    id: i64,
    account: AccountId,
    index: i64,
    at: i64,
    agent: Option<AgentId>,
    execution: Option<ExecutionId>,
    key: Option<KeyId>,
    action_type: String,
    category: String,
    description: String,
    state: String,
    violation: bool,
}

/// Logs written before leaves existed have events without leaves; give them
/// leaves, in index order, so every log is whole. Runs once at open.
pub(crate) fn backfill(conn: &mut Connection) -> StoreResult<u64> {
    let missing: Vec<Unlogged> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.id, e.account_id, e.leaf_index, e.timestamp, e.agent_id, e.execution_id, e.key_id,
                        e.action_type, e.action_category, e.description, e.permission_state, e.is_violation
                 FROM audit_events e LEFT JOIN audit_leaves l
                   ON l.leaf_key = (e.account_id << 40) | e.leaf_index
                 WHERE l.leaf_key IS NULL ORDER BY e.account_id, e.leaf_index",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Unlogged {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    index: r.get(2)?,
                    at: r.get(3)?,
                    agent: r.get(4)?,
                    execution: r.get(5)?,
                    key: r.get(6)?,
                    action_type: r.get(7)?,
                    category: r.get(8)?,
                    description: r.get(9)?,
                    state: r.get(10)?,
                    violation: r.get(11)?,
                })
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        rows
    };
    if missing.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction().map_err(map_err)?;
    let count = missing.len() as u64;
    for Unlogged {
        id,
        account,
        index,
        at,
        agent,
        execution,
        key,
        action_type,
        category,
        description,
        state,
        violation,
    } in missing
    {
        let payload: Option<String> = query_row_cached(
            &tx,
            "SELECT payload FROM audit_payloads WHERE audit_id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
        let mut event = AuditEvent::named(account, &action_type, &category, description);
        event.agent_id = agent;
        event.execution_id = execution;
        event.key_id = key;
        event.is_violation = violation;
        event.permission_state = if state == "n/a" { "none".into() } else { state };
        event.payload = payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(serde_json::Value::Null);
        let commitment = commit_payload(&event.payload);
        let time: OffsetDateTime = from_micros(at);
        let bytes = leaf_bytes(&event, time, commitment.commitment)
            .map_err(|e| StoreError::Internal(format!("backfill leaf {index}: {e}")))?;
        let rows = merkle::append(
            index as u64,
            &[bytes.as_slice()],
            &TxHashes { conn: &tx, account },
        )
        .map_err(merkle_err)?;
        let leaf_hash = merkle::leaf_hash(&bytes).0;
        execute_cached(
            &tx,
            "INSERT INTO audit_leaves (leaf_key, leaf_bytes, leaf_hash) VALUES (?1, ?2, ?3)",
            params![
                log_key(account, index as u64).map_err(merkle_err)?,
                bytes,
                &leaf_hash[..]
            ],
        )
        .map_err(map_err)?;
        insert_hashes(&tx, account, rows)?;
        execute_cached(
            &tx,
            "INSERT OR IGNORE INTO audit_payload_salts (audit_id, salt) VALUES (?1, ?2)",
            params![id, &commitment.salt[..]],
        )
        .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)?;
    Ok(count)
}
