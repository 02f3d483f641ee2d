//! The single writer: every write runs on one dedicated thread, and writes
//! that arrive together share one transaction (group commit).
//!
//! With `synchronous = FULL` each commit waits for the disk; committing a batch
//! at once lets many callers share that wait. Each write runs inside its own
//! savepoint, so a failing write is rolled back alone and the others in the
//! batch still commit. A caller is answered only after the commit that holds
//! its write succeeded: an acknowledged write is durable.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, Transaction};
use thetazero_core::store::{StoreError, StoreResult};
use tokio::sync::oneshot;

use crate::map_err;

/// Most writes one transaction takes; bounds the latency a batch adds.
const MAX_BATCH: usize = 1024;

trait Job: Send {
    /// Runs the write; answers whether it succeeded. Its changes are kept only
    /// if it did.
    fn apply(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<StoreResult<T>>,
    done: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
{
    fn apply(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = f(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let outcome = match (commit, self.result) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), None) => Err(StoreError::Internal("the write did not run".into())),
            (Err(e), _) => Err(clone_err(e)),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = self.done.send(outcome);
    }
}

pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Dropping it stops the checkpoint thread.
    _stop_checkpoints: mpsc::Sender<()>,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl Writer {
    pub(crate) fn start(conn: Connection, checkpointer: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(checkpointer, stopped))?;
        Ok(Writer {
            jobs: tx,
            _stop_checkpoints: stop,
        })
    }

    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            result: None,
            done,
        };
        self.jobs
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the database writer dropped a write".into()))?
    }
}

/// Copies committed WAL frames into the database file without blocking the
/// writer (PASSIVE), until the store is dropped, then once more.
fn checkpoints(conn: Connection, stop: mpsc::Receiver<()>) {
    loop {
        let stopping = !matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
        if stopping {
            return;
        }
    }
}

/// Batches between the writer's own checkpoints (see `run`).
const RESTART_EVERY: u32 = 64;

fn run(mut conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    let mut since_checkpoint = 0;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch);
        // Under steady writes the checkpoint thread never catches up with
        // the last frame, so SQLite never starts the WAL over: it grew
        // without bound, and appending to a growing file made every
        // commit's fsync about three times slower than overwriting. Now and
        // then the writer finishes the checkpoint itself (the checkpoint
        // thread has copied most frames already), so the next transaction
        // writes the WAL from its start again.
        since_checkpoint += 1;
        if since_checkpoint >= RESTART_EVERY {
            since_checkpoint = 0;
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
            }
        }
    }
}

fn commit_batch(conn: &mut Connection, mut batch: Vec<Box<dyn Job>>) {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = map_err(e);
            for job in batch {
                job.finish(Err(&err));
            }
            return;
        }
    };
    for job in batch.iter_mut() {
        if let Err(e) = crate::execute_cached(&tx, "SAVEPOINT job", []) {
            tracing::error!(error = %e, "could not open a savepoint");
            continue;
        }
        let keep = job.apply(&tx);
        let end = if keep {
            crate::execute_cached(&tx, "RELEASE job", []).map(drop)
        } else {
            tx.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "could not close a savepoint");
        }
    }
    let started = std::time::Instant::now();
    let commit = tx.commit().map_err(map_err);
    thetazero_core::telemetry::global()
        .store_commit
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &commit {
        tracing::error!(error = %e, writes = batch.len(), "a batch of writes failed to commit");
    }
    for job in batch {
        job.finish(commit.as_ref().map(|_| ()));
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
