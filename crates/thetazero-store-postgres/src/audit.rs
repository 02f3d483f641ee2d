//! Audit appends: group commit of concurrent `append_audit` calls, and the
//! transaction step that turns events into Merkle leaves with contiguous
//! indices. Must never update or delete an audit row, nor touch tables
//! outside the audit log.
//!
//! Every commit waits for the WAL to reach disk, and appends to one account's
//! log are serialised by its head row, so one event per transaction caps a
//! log at one fsync per event. Like the SQLite writer, calls that arrive
//! together share a transaction. A few writer tasks run side by side, and
//! each account's appends always go to the same one (chosen by account id):
//! appends to one log gather into large batches instead of spreading over
//! writers that would only queue on its head row, while different logs still
//! commit in parallel.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::{GenericClient, Pool, Transaction};
use thetazero_audit::merkle;
use thetazero_core::audit::{commit_payload, leaf_bytes, AuditEvent, AuditRecord};
use thetazero_core::model::{
    AccountId, AuditRecordId, Execution, ExecutionId, ExecutionOutcome, NewExecution,
};
use thetazero_core::store::{StoreError, StoreResult};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use crate::error::{map_pg, map_pool};
use crate::{col, execute, from_micros, now_micros, query, query_one};

/// Most events one transaction takes; bounds the latency a batch adds.
const MAX_BATCH_EVENTS: usize = 4096;
/// Appends that may wait for a writer before callers are held back.
const QUEUE: usize = 1024;

/// An execution row written in the same transaction as its events.
pub(crate) enum ExecWrite {
    /// Its start: the row, `running`.
    Create { id: ExecutionId, new: NewExecution },
    /// Its end; records nothing when it is not running any more.
    Finish {
        account: AccountId,
        id: ExecutionId,
        outcome: ExecutionOutcome,
    },
    /// A whole run at once.
    Record {
        id: ExecutionId,
        new: NewExecution,
        outcome: ExecutionOutcome,
    },
}

/// What a job leaves: the execution row it wrote, if any, and its records.
type Written = (Option<Execution>, Vec<AuditRecord>);

struct Job {
    exec: Option<ExecWrite>,
    events: Vec<AuditEvent>,
    done: oneshot::Sender<StoreResult<Written>>,
}

/// The events of a batch, and with them their payloads and salts (matched to
/// the new rows by account and leaf index, as they need the rows' ids). Data-
/// modifying CTEs run to completion whether or not the outer query reads them.
const INSERT_EVENTS: &str = "
WITH ev AS (
    INSERT INTO audit_events (account_id, leaf_index, timestamp, agent_id, execution_id,
        key_id, action_type, action_category, description, permission_state, is_violation,
        input_summary, output_summary)
    SELECT a, l, $3, g, x, k, t, c, d, p, v, i, o
    FROM unnest($1::bigint[], $2::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[],
                $12::text[], $13::text[])
         WITH ORDINALITY AS u(a, l, g, x, k, t, c, d, p, v, i, o, n)
    ORDER BY n
    RETURNING id, account_id, leaf_index
), payload AS (
    INSERT INTO audit_payloads (audit_id, payload)
    SELECT ev.id, u.payload
    FROM unnest($14::bigint[], $15::bigint[], $16::text[]) AS u(a, l, payload)
    JOIN ev ON ev.account_id = u.a AND ev.leaf_index = u.l
), salt AS (
    INSERT INTO audit_payload_salts (audit_id, salt)
    SELECT ev.id, u.salt
    FROM unnest($14::bigint[], $15::bigint[], $17::bytea[]) AS u(a, l, salt)
    JOIN ev ON ev.account_id = u.a AND ev.leaf_index = u.l
)
SELECT id, account_id, leaf_index FROM ev";

/// Where an event landed.
pub(crate) struct Placement {
    id: i64,
    leaf_index: i64,
    leaf_hash: [u8; 32],
    timestamp: OffsetDateTime,
}

pub(crate) struct AuditWriter {
    queues: Vec<mpsc::Sender<Job>>,
}

impl AuditWriter {
    /// Starts `writers` tasks on the current runtime; they stop when the
    /// writer is dropped and the queue has drained.
    pub(crate) fn start(pool: Pool, writers: usize) -> AuditWriter {
        let queues = (0..writers.max(1))
            .map(|_| {
                let (jobs, queue) = mpsc::channel(QUEUE);
                tokio::spawn(run(pool.clone(), queue));
                jobs
            })
            .collect();
        AuditWriter { queues }
    }

    /// Answers only after the transaction holding the events committed.
    pub(crate) async fn append(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
        Ok(self.submit(None, events).await?.1)
    }

    /// Writes an execution row and its events in one transaction, shared
    /// with whatever else this writer commits at the same time.
    pub(crate) async fn execution(
        &self,
        write: ExecWrite,
        events: Vec<AuditEvent>,
    ) -> StoreResult<Written> {
        self.submit(Some(write), events).await
    }

    async fn submit(
        &self,
        exec: Option<ExecWrite>,
        events: Vec<AuditEvent>,
    ) -> StoreResult<Written> {
        let (done, answer) = oneshot::channel();
        let account = events.first().map_or(0, |e| e.account_id.get());
        let slot = account.rem_euclid(self.queues.len() as i64) as usize;
        self.queues[slot]
            .send(Job { exec, events, done })
            .await
            .map_err(|_| StoreError::Internal("the audit writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the audit writer dropped an append".into()))?
    }
}

async fn run(pool: Pool, mut queue: mpsc::Receiver<Job>) {
    loop {
        // What queued up while the previous batch committed is the next batch.
        let batch = {
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut size = first.events.len();
            let mut batch = vec![first];
            while size < MAX_BATCH_EVENTS {
                match queue.try_recv() {
                    Ok(job) => {
                        size += job.events.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        commit(&pool, batch).await;
    }
}

async fn commit(pool: &Pool, batch: Vec<Job>) {
    let parts: Vec<(&Option<ExecWrite>, &[AuditEvent])> = batch
        .iter()
        .map(|j| (&j.exec, j.events.as_slice()))
        .collect();
    match commit_once(pool, &parts).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                // The caller may have gone away (request cancelled); what
                // committed stands.
                let _ = job
                    .done
                    .send(outcome.map(|(row, placements)| (row, records(job.events, placements))));
            }
        }
        // A data error in one caller's part must not fail the others: the
        // transaction certainly rolled back, so each caller is retried alone.
        // An unavailable database (or a lone job) fails as it is; retrying
        // after a lost COMMIT could write twice.
        Err(e) if batch.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
            for job in batch {
                let result = commit_once(pool, &[(&job.exec, job.events.as_slice())])
                    .await
                    .and_then(|mut v| v.pop().ok_or_else(|| clone_err(&e)))
                    .and_then(|outcome| outcome)
                    .map(|(row, placements)| (row, records(job.events, placements)));
                let _ = job.done.send(result);
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.done.send(Err(clone_err(&e)));
            }
        }
    }
}

/// One job's result inside a committed batch: its execution row and where
/// its events landed, or why its part was left out.
type Outcome = StoreResult<(Option<Execution>, Vec<Placement>)>;

/// One transaction for a batch: each job's execution write in a savepoint of
/// its own (a failing one is undone alone and its events left out), then
/// every remaining event in one append, then one durable commit.
async fn commit_once(
    pool: &Pool,
    jobs: &[(&Option<ExecWrite>, &[AuditEvent])],
) -> StoreResult<Vec<Outcome>> {
    let mut client = pool.get().await.map_err(map_pool)?;
    let mut tx = client.transaction().await.map_err(map_pg)?;
    let mut rows: Vec<StoreResult<(Option<Execution>, bool)>> = Vec::with_capacity(jobs.len());
    for (exec, _) in jobs {
        let Some(write) = exec else {
            rows.push(Ok((None, true)));
            continue;
        };
        let sp = tx.savepoint("execution").await.map_err(map_pg)?;
        let written = match write {
            ExecWrite::Create { id, new } => {
                crate::insert_execution(&sp, *id, new, None).await.map(Some)
            }
            ExecWrite::Record { id, new, outcome } => {
                crate::insert_execution(&sp, *id, new, Some(outcome))
                    .await
                    .map(Some)
            }
            ExecWrite::Finish {
                account,
                id,
                outcome,
            } => crate::end_execution(&sp, *account, *id, outcome).await,
        };
        match written {
            Ok(row) => {
                sp.commit().await.map_err(map_pg)?;
                let keep = row.is_some();
                rows.push(Ok((row, keep)));
            }
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                sp.rollback().await.map_err(map_pg)?;
                rows.push(Err(e));
            }
        }
    }
    let kept: Vec<&AuditEvent> = jobs
        .iter()
        .zip(&rows)
        .filter(|(_, r)| matches!(r, Ok((_, true))))
        .flat_map(|((_, events), _)| events.iter())
        .collect();
    let mut placements = if kept.is_empty() {
        Vec::new()
    } else {
        append_in(&tx, &kept).await?
    }
    .into_iter();
    // Answered only after the commit: what is acknowledged is durable.
    crate::commit(tx).await?;
    Ok(jobs
        .iter()
        .zip(rows)
        .map(|((_, events), row)| {
            row.map(|(execution, keep)| {
                let mine = if keep {
                    placements.by_ref().take(events.len()).collect()
                } else {
                    Vec::new()
                };
                (execution, mine)
            })
        })
        .collect())
}

fn records(events: Vec<AuditEvent>, placements: Vec<Placement>) -> Vec<AuditRecord> {
    events
        .into_iter()
        .zip(placements)
        .map(|(event, p)| record(event, p))
        .collect()
}

pub(crate) fn record(event: AuditEvent, p: Placement) -> AuditRecord {
    AuditRecord {
        id: AuditRecordId::new(p.id),
        leaf_index: p.leaf_index as u64,
        leaf_hash: p.leaf_hash,
        timestamp: p.timestamp,
        event,
    }
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::LastKeyManager(m) => StoreError::LastKeyManager(m.clone()),
        StoreError::PendingLimit { limit, open } => StoreError::PendingLimit {
            limit: *limit,
            open: *open,
        },
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

/// Appends `events` inside the caller's transaction, which then holds the
/// logs' head rows until it ends; answers the events' places, in order.
///
/// Each event becomes a leaf (its exact bytes are stored, never rebuilt), and
/// the interior hashes the new leaves complete are computed from the right
/// edge of the tree as stored, fetched in one query per account.
pub(crate) async fn append_in(
    tx: &Transaction<'_>,
    events: &[&AuditEvent],
) -> StoreResult<Vec<Placement>> {
    // The leaves first, before any lock is taken: building and hashing them
    // is the costliest step of an append and needs nothing from the log.
    // Their time is therefore taken before the head rows are held; within
    // one writer appends are serial, so one process's times still follow the
    // log's order (replicas' clocks never promised that across processes).
    let now = now_micros();
    let time = from_micros(now);
    let len = events.len();
    thetazero_core::telemetry::global()
        .audit_appends
        .inc_by(len as u64);
    let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(len);
    let mut leaf_hashes: Vec<[u8; 32]> = Vec::with_capacity(len);
    let mut commitments = Vec::with_capacity(len);
    for e in events {
        let commitment = commit_payload(&e.payload);
        let bytes = leaf_bytes(e, time, commitment.commitment)
            .map_err(|err| StoreError::Internal(format!("event cannot become a leaf: {err}")))?;
        leaf_hashes.push(merkle::leaf_hash(&bytes).0);
        leaves.push(bytes);
        commitments.push(commitment);
    }

    // Reserve each account's indices by bumping its head row. The upsert
    // locks the row until commit, so appends to one log are serialised across
    // every replica, and a rolled-back append gives its indices back.
    // Accounts are locked in ascending order so that two batches touching the
    // same accounts cannot deadlock.
    let mut counts: BTreeMap<AccountId, i64> = BTreeMap::new();
    for e in events {
        *counts.entry(e.account_id).or_insert(0) += 1;
    }
    let mut base: BTreeMap<AccountId, i64> = BTreeMap::new();
    for (account, n) in &counts {
        let row = query_one(
            tx,
            "INSERT INTO audit_log_heads (account_id, size) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET size = audit_log_heads.size + excluded.size
             RETURNING size - $2",
            &[account, n],
        )
        .await?;
        base.insert(*account, col(&row, 0)?);
    }
    let mut next = base.clone();
    let mut indices = Vec::with_capacity(len);
    for e in events {
        let slot = next
            .get_mut(&e.account_id)
            .ok_or_else(|| StoreError::Internal("audit head missing".into()))?;
        indices.push(*slot);
        *slot += 1;
    }

    // The interior hashes, one account at a time.
    let mut hash_accounts: Vec<i64> = Vec::new();
    let mut hash_indexes: Vec<i64> = Vec::new();
    let mut hash_values: Vec<&[u8]> = Vec::new();
    let mut new_rows = Vec::new();
    for (account, first) in &base {
        let mine: Vec<&[u8]> = events
            .iter()
            .zip(&leaves)
            .filter(|(e, _)| e.account_id == *account)
            .map(|(_, b)| b.as_slice())
            .collect();
        let leaf_count =
            u64::try_from(*first).map_err(|_| StoreError::corrupt("audit log size"))?;
        let prefetched = prefetch(tx, *account, leaf_count).await?;
        let rows = merkle::append(leaf_count, &mine, &prefetched)
            .map_err(|e| StoreError::Internal(format!("audit log: {e}")))?;
        new_rows.push((*account, rows));
    }
    for (account, rows) in &new_rows {
        for row in rows {
            hash_accounts.push(account.get());
            hash_indexes.push(
                i64::try_from(row.index).map_err(|_| StoreError::corrupt("audit hash index"))?,
            );
            hash_values.push(&row.hash.0[..]);
        }
    }

    let mut account_ids = Vec::with_capacity(len);
    let mut agent_ids = Vec::with_capacity(len);
    let mut execution_ids = Vec::with_capacity(len);
    let mut key_ids = Vec::with_capacity(len);
    let mut action_types = Vec::with_capacity(len);
    let mut categories = Vec::with_capacity(len);
    let mut descriptions = Vec::with_capacity(len);
    let mut states = Vec::with_capacity(len);
    let mut violations = Vec::with_capacity(len);
    let mut inputs = Vec::with_capacity(len);
    let mut outputs = Vec::with_capacity(len);
    for e in events {
        account_ids.push(e.account_id);
        agent_ids.push(e.agent_id);
        execution_ids.push(e.execution_id);
        key_ids.push(e.key_id);
        action_types.push(e.action_type.as_str());
        categories.push(e.action_category.as_str());
        descriptions.push(e.description.as_str());
        states.push(e.permission_state.as_str());
        violations.push(e.is_violation);
        inputs.push(e.input_summary.as_deref());
        outputs.push(e.output_summary.as_deref());
    }
    // Leaf places and payload rows, keyed like the events they belong to.
    let mut payload_accounts = Vec::new();
    let mut payload_indices = Vec::new();
    let mut payloads = Vec::new();
    let mut salts: Vec<&[u8]> = Vec::new();
    for ((e, index), commitment) in events.iter().zip(&indices).zip(&commitments) {
        if let Some(text) = &commitment.text {
            payload_accounts.push(e.account_id);
            payload_indices.push(*index);
            payloads.push(text.as_str());
            salts.push(&commitment.salt[..]);
        }
    }
    let hash_refs: Vec<&[u8]> = leaf_hashes.iter().map(|h| &h[..]).collect();

    // Three statements for the whole batch, sent together (the driver
    // pipelines concurrent requests on one connection), so the head rows are
    // held for as few round trips as possible. Payloads and salts ride with
    // the events because they need the events' ids.
    let event_params: [&(dyn ToSql + Sync); 17] = [
        &account_ids,
        &indices,
        &now,
        &agent_ids,
        &execution_ids,
        &key_ids,
        &action_types,
        &categories,
        &descriptions,
        &states,
        &violations,
        &inputs,
        &outputs,
        &payload_accounts,
        &payload_indices,
        &payloads,
        &salts,
    ];
    let leaf_params: [&(dyn ToSql + Sync); 4] = [&account_ids, &indices, &leaves, &hash_refs];
    let hash_params: [&(dyn ToSql + Sync); 3] = [&hash_accounts, &hash_indexes, &hash_values];
    let insert_events = query(tx, INSERT_EVENTS, &event_params);
    let insert_leaves = execute(
        tx,
        "INSERT INTO audit_leaves (account_id, leaf_index, leaf_bytes, leaf_hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
        &leaf_params,
    );
    let insert_hashes = execute(
        tx,
        "INSERT INTO audit_hashes (account_id, storage_index, hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
        &hash_params,
    );
    let (rows, _, _) = tokio::try_join!(insert_events, insert_leaves, insert_hashes)?;

    // RETURNING order is not promised; match rows by their unique
    // (account, leaf index) instead.
    let mut ids: HashMap<(AccountId, i64), i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        ids.insert((col(row, 1)?, col(row, 2)?), col(row, 0)?);
    }
    let mut out = Vec::with_capacity(len);
    for ((event, index), leaf_hash) in events.iter().zip(indices).zip(leaf_hashes) {
        let id = *ids
            .get(&(event.account_id, index))
            .ok_or_else(|| StoreError::Internal("an audit insert returned no id".into()))?;
        out.push(Placement {
            id,
            leaf_index: index,
            leaf_hash,
            timestamp: time,
        });
    }
    Ok(out)
}

/// The stored hashes an append to a log of `leaf_count` leaves reads.
async fn prefetch(
    tx: &Transaction<'_>,
    account: AccountId,
    leaf_count: u64,
) -> StoreResult<merkle::PrefetchedHashes> {
    let wanted = merkle::indexes_for_append(leaf_count)
        .map_err(|e| StoreError::Internal(format!("audit log: {e}")))?;
    if wanted.is_empty() {
        return Ok(merkle::PrefetchedHashes::default());
    }
    read_hashes(tx, account, &wanted).await.map(|hashes| {
        merkle::PrefetchedHashes::new(wanted.into_iter().zip(hashes.into_iter().map(merkle::Hash)))
    })
}

/// Stored hashes by storage index, in the order asked; a missing one is an
/// error, as it means the log is damaged or the index is past its end.
pub(crate) async fn read_hashes<C: GenericClient>(
    c: &C,
    account: AccountId,
    indexes: &[u64],
) -> StoreResult<Vec<[u8; 32]>> {
    let wanted: Vec<i64> = indexes
        .iter()
        .map(|&i| i64::try_from(i).unwrap_or(i64::MAX))
        .collect();
    // One primary-key lookup per index, spelled so that no plan can turn it
    // into a scan: `storage_index = ANY($2)` was planned as one once the log
    // grew, and the cost of every append grew with it.
    let rows = query(
        c,
        "SELECT w.i, h.hash FROM unnest($2::bigint[]) AS w(i)
         CROSS JOIN LATERAL (
             SELECT hash FROM audit_hashes WHERE account_id = $1 AND storage_index = w.i
         ) h",
        &[&account, &wanted],
    )
    .await?;
    let mut found: HashMap<i64, [u8; 32]> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let bytes: Vec<u8> = col(row, 1)?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::corrupt("audit hash"))?;
        found.insert(col(row, 0)?, hash);
    }
    wanted
        .iter()
        .map(|i| {
            found
                .get(i)
                .copied()
                .ok_or_else(|| StoreError::Internal(format!("audit log: hash {i} is not stored")))
        })
        .collect()
}
