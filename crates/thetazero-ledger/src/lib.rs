//! The audit log's read side: what a client verifies on its own (signed
//! checkpoints, record proofs, consistency proofs, exports, signed execution
//! receipts, anchoring of checkpoints) and the live feed of appended records
//! (`feed`).
//!
//! The store keeps leaves, interior hashes and checkpoints; this module turns
//! them into material a client verifies on its own with the deployment's
//! verifier key. It never signs a checkpoint inconsistent with one it signed
//! before (`CheckpointSigner` refuses), and one lock per deployment process
//! serialises signing.

pub mod feed;

use std::collections::HashMap;
use std::sync::Arc;
/// What a CSV export is; sent beside it, never inside the file.
pub use thetazero_audit::csv::NOT_VERIFIABLE_NOTICE as CSV_NOTICE;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use thetazero_anchor::{Anchor, AnchorRequest, AnchorStatus, Attempt, Heartbeat, LogAnchorState};
use thetazero_audit::merkle::{self, Hash, PrefetchedHashes};
use thetazero_audit::{
    AuditSigner, CheckpointSigner, Digest, ExecutionReceipt, RecordProof, VerifierKey,
};
use thetazero_core::audit::AnchorRecord;
use thetazero_core::audit::{AuditAction, AuditQuery, AuditRecord, StoredCheckpoint};
use thetazero_core::model::{AccountId, AgentId, AuditRecordId, Execution, ExecutionId, RunReport};
use thetazero_core::store::{Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit log inconsistency: {0}")]
    Integrity(String),
}

pub type LedgerResult<T> = Result<T, LedgerError>;

fn integrity(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Integrity(e.to_string())
}

/// How the code was isolated, reported as `tee_mode`: what the execution's
/// own record says it had (`process_sandbox`, `in_process`, or `none` when
/// no code ran). Records written before the engine said so ran in process.
/// Honest by design: no hardware attestation is claimed.
fn tee_mode(report: &RunReport) -> String {
    match report.tee_mode.as_deref() {
        Some(mode @ ("process_sandbox" | "in_process" | "none")) => mode.to_string(),
        _ => "in_process".to_string(),
    }
}

/// A finished execution's signed receipt (the signed note) with what it
/// states, for the reader who does not parse the note.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedReceipt {
    pub execution_id: ExecutionId,
    pub agent_id: AgentId,
    pub agent_version: String,
    pub status: String,
    pub code_sha256: String,
    /// Hex SHA-256 of the input's JSON text.
    pub input_digest: String,
    pub output_digest: Option<String>,
    pub limits: serde_json::Map<String, Value>,
    pub tee_mode: String,
    pub attestation_id: String,
    /// The signed note.
    pub receipt: String,
    pub first_leaf: u64,
    pub last_leaf: u64,
    /// The signed checkpoint covering `last_leaf`.
    pub checkpoint: String,
    pub log_origin: String,
    pub verifier_key: String,
    /// The server's own check of the note against its key.
    pub chain_valid: bool,
    pub verified_at: String,
}

pub struct Ledger {
    store: Arc<dyn Store>,
    anchor: Arc<dyn Anchor>,
    /// The signing key in its string form; `AuditSigner` is rebuilt from it
    /// for each log's `CheckpointSigner`.
    signer_key: String,
    verifier: VerifierKey,
    deployment: String,
    signers: Mutex<HashMap<AccountId, CheckpointSigner>>,
}

/// `from..to` of leaves, fetched in pages this big.
const PAGE: u64 = 2000;

impl Ledger {
    pub fn new(store: Arc<dyn Store>, signer_key: &str, deployment: &str) -> LedgerResult<Ledger> {
        let signer = AuditSigner::parse(signer_key)
            .map_err(|e| LedgerError::Invalid(format!("signing key: {e}")))?;
        Ok(Ledger {
            store,
            anchor: Arc::new(thetazero_anchor::NoneAnchor),
            verifier: signer.verifier_key(),
            signer_key: signer_key.to_string(),
            deployment: deployment.to_string(),
            signers: Mutex::new(HashMap::new()),
        })
    }

    /// Anchors checkpoints with `anchor` (the default anchors nothing).
    pub fn with_anchor(mut self, anchor: Arc<dyn Anchor>) -> Ledger {
        self.anchor = anchor;
        self
    }

    /// A secret for `label`, derived from the deployment's signing key, so
    /// every replica derives the same one and none is stored anywhere.
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"thetazero derived secret\0");
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.signer_key.as_bytes());
        h.finalize().into()
    }

    /// A bare Ed25519 signature by the deployment's key over `message`
    /// (evidence packages sign their manifest with it).
    pub fn sign_raw(&self, message: &[u8]) -> LedgerResult<[u8; 64]> {
        let signer = AuditSigner::parse(&self.signer_key)
            .map_err(|e| LedgerError::Invalid(format!("signing key: {e}")))?;
        Ok(signer.sign_raw(message))
    }

    /// The kind of external anchor in use (`none`, `witness`, `command`).
    pub fn anchor_kind(&self) -> &str {
        self.anchor.kind()
    }

    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The origin line of an account's log.
    pub fn origin(&self, account: AccountId) -> String {
        format!("{}/audit/{account}", self.deployment)
    }

    async fn hashes(
        &self,
        account: AccountId,
        indexes: Vec<u64>,
    ) -> LedgerResult<PrefetchedHashes> {
        let hashes = self.store.audit_hashes(account, indexes.clone()).await?;
        Ok(PrefetchedHashes::new(
            indexes.into_iter().zip(hashes.into_iter().map(Hash)),
        ))
    }

    pub async fn root(&self, account: AccountId, size: u64) -> LedgerResult<Hash> {
        let indexes = merkle::indexes_for_root(size).map_err(integrity)?;
        let hashes = self.hashes(account, indexes).await?;
        merkle::root(size, &hashes).map_err(integrity)
    }

    pub async fn consistency_proof(
        &self,
        account: AccountId,
        from: u64,
        to: u64,
    ) -> LedgerResult<Vec<Hash>> {
        if from > to {
            return Err(LedgerError::Invalid(format!(
                "from ({from}) is past to ({to})"
            )));
        }
        if from == 0 || from == to {
            return Ok(Vec::new());
        }
        let indexes = merkle::indexes_for_consistency(from, to).map_err(integrity)?;
        let hashes = self.hashes(account, indexes).await?;
        merkle::consistency_proof(from, to, &hashes).map_err(integrity)
    }

    pub async fn inclusion_proof(
        &self,
        account: AccountId,
        size: u64,
        index: u64,
    ) -> LedgerResult<Vec<Hash>> {
        let indexes = merkle::indexes_for_inclusion(size, index).map_err(integrity)?;
        let hashes = self.hashes(account, indexes).await?;
        merkle::inclusion_proof(size, index, &hashes).map_err(integrity)
    }

    /// Signs a checkpoint of the account's log as it is now, unless the
    /// latest one already covers it. Answers the latest checkpoint (`None`
    /// for an empty log).
    pub async fn checkpoint(&self, account: AccountId) -> LedgerResult<Option<StoredCheckpoint>> {
        let mut signers = self.signers.lock().await;
        let size = self.store.audit_log_size(account).await?;
        let latest = self.store.latest_checkpoint(account).await?;
        if size == 0 || latest.as_ref().is_some_and(|c| c.size >= size) {
            return Ok(latest);
        }
        let origin = self.origin(account);
        let signer = match signers.entry(account) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let key = AuditSigner::parse(&self.signer_key).map_err(integrity)?;
                e.insert(match &latest {
                    Some(c) => {
                        CheckpointSigner::resume(key, &origin, &c.note).map_err(integrity)?
                    }
                    None => CheckpointSigner::new(key, &origin),
                })
            }
        };
        // The proof runs from the tree this process last signed, which its
        // signer checks the new one against. Another replica may have signed
        // a newer checkpoint since (several serve one PostgreSQL database):
        // a proof from that one's size would not match this signer's.
        let from = signer.last().map_or(0, |c| c.size);
        let root = self.root(account, size).await?;
        let proof = self.consistency_proof(account, from, size).await?;
        let note = signer.sign(size, root, &proof).map_err(integrity)?;
        self.store.store_checkpoint(account, size, &note).await?;
        thetazero_core::telemetry::global().checkpoint_signed();
        Ok(Some(StoredCheckpoint {
            size,
            note,
            created_at: OffsetDateTime::now_utc(),
        }))
    }

    /// Signs checkpoints for every log that grew since its last one.
    pub async fn checkpoint_all(&self) -> LedgerResult<usize> {
        let logs = self.store.logs_needing_checkpoint().await?;
        let mut signed = 0;
        for (account, _, _) in logs {
            if self.checkpoint(account).await?.is_some() {
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// A checkpoint that includes leaf `index`, signing one if none does yet.
    async fn checkpoint_covering(
        &self,
        account: AccountId,
        index: u64,
    ) -> LedgerResult<StoredCheckpoint> {
        if let Some(c) = self.store.checkpoint_covering(account, index + 1).await? {
            return Ok(c);
        }
        self.checkpoint(account)
            .await?
            .filter(|c| c.size > index)
            .ok_or_else(|| integrity(format!("no checkpoint covers leaf {index}")))
    }

    /// Everything a client needs to verify one record by itself.
    pub async fn record_proof(
        &self,
        account: AccountId,
        record_id: AuditRecordId,
    ) -> LedgerResult<RecordProof> {
        let record = self
            .store
            .audit_record(account, record_id)
            .await?
            .ok_or(LedgerError::NotFound)?;
        self.proof_for(account, &record).await
    }

    async fn proof_for(
        &self,
        account: AccountId,
        record: &AuditRecord,
    ) -> LedgerResult<RecordProof> {
        let index = record.leaf_index;
        let covering = self.checkpoint_covering(account, index).await?;
        let leaf = self
            .store
            .audit_leaves(account, index, index + 1, 1)
            .await?
            .pop()
            .map(|(_, bytes)| bytes)
            .ok_or_else(|| integrity(format!("leaf {index} is missing")))?;
        let inclusion = self.inclusion_proof(account, covering.size, index).await?;
        let latest = self
            .checkpoint(account)
            .await?
            .unwrap_or_else(|| covering.clone());
        let consistency = if latest.size > covering.size {
            Some(
                self.consistency_proof(account, covering.size, latest.size)
                    .await?,
            )
        } else {
            None
        };
        let mut proof = RecordProof::new(
            record.id.get(),
            &self.origin(account),
            index,
            &leaf,
            &covering.note,
            &inclusion,
            consistency.as_ref().map(|p| {
                (
                    covering.size,
                    latest.size,
                    p.as_slice(),
                    latest.note.as_str(),
                )
            }),
        );
        let anchors = self.store.anchors(account, covering.size, u64::MAX).await?;
        proof.anchors = anchors
            .iter()
            .map(|a| thetazero_audit::proof::Anchor {
                kind: a.kind.clone(),
                checkpoint_size: a.checkpoint_size,
                status: a.status.clone(),
                external_ref: a.external_ref.clone(),
            })
            .collect();
        proof.anchor_tx_hash = anchors
            .iter()
            .find(|a| a.status == "confirmed" && a.external_ref.is_some())
            .and_then(|a| a.external_ref.clone());
        // The server's own verdict, for the spec's `chain_valid`; a client
        // checks the same material itself.
        proof.chain_valid =
            thetazero_audit::verify_record_proof(&proof, &self.verifier, None).is_ok();
        proof.verified_at = rfc3339(OffsetDateTime::now_utc());
        Ok(proof)
    }

    /// The signed receipt of a finished execution.
    pub async fn execution_receipt(
        &self,
        account: AccountId,
        execution: &Execution,
    ) -> LedgerResult<SignedReceipt> {
        let events = self
            .store
            .query_audit(
                account,
                &AuditQuery {
                    execution_id: Some(execution.id),
                    action_types: vec![
                        AuditAction::ExecutionStarted.to_string(),
                        AuditAction::ExecutionCompleted.to_string(),
                    ],
                    limit: 10,
                    ..Default::default()
                },
            )
            .await?
            .items;
        let first = events
            .iter()
            .find(|e| e.event.action_type == AuditAction::ExecutionStarted);
        let last = events
            .iter()
            .rev()
            .find(|e| e.event.action_type == AuditAction::ExecutionCompleted);
        let (Some(first), Some(last)) = (first, last) else {
            return Err(LedgerError::Invalid(
                "the execution has not finished".into(),
            ));
        };
        let checkpoint = self.checkpoint_covering(account, last.leaf_index).await?;
        let report = execution.run_report();
        let output_digest = execution
            .output
            .as_ref()
            .map(|o| Digest(Sha256::digest(o.to_string().as_bytes()).into()));
        let receipt = ExecutionReceipt {
            receipt_type: thetazero_audit::receipt::RECEIPT_TYPE.to_string(),
            execution_id: execution.id.get(),
            agent_id: execution.agent_id.get(),
            agent_version: execution.agent_version.clone(),
            code_hash: Digest::from_hex(&execution.code_sha256)
                .ok_or_else(|| integrity("stored code hash is not hex"))?,
            input_digest: Digest(Sha256::digest(execution.input.to_string().as_bytes()).into()),
            output_digest,
            limits: report.limits.clone(),
            tee_mode: tee_mode(&report),
            audit_first_leaf: first.leaf_index,
            audit_last_leaf: last.leaf_index,
            checkpoint: checkpoint.note.clone(),
        };
        let key = AuditSigner::parse(&self.signer_key).map_err(integrity)?;
        let (note, attestation_id) = receipt.sign(&key).map_err(integrity)?;
        let chain_valid = thetazero_audit::verify_receipt(&note, &self.verifier).is_ok();
        Ok(SignedReceipt {
            execution_id: execution.id,
            agent_id: execution.agent_id,
            agent_version: execution.agent_version.clone(),
            status: execution.status.as_str().to_string(),
            code_sha256: execution.code_sha256.clone(),
            input_digest: receipt.input_digest.to_hex(),
            output_digest: receipt.output_digest.map(|d| d.to_hex()),
            limits: receipt.limits,
            tee_mode: receipt.tee_mode,
            attestation_id,
            receipt: note,
            first_leaf: first.leaf_index,
            last_leaf: last.leaf_index,
            checkpoint: checkpoint.note.clone(),
            log_origin: self.origin(account),
            verifier_key: self.verifier.as_str().to_string(),
            chain_valid,
            verified_at: rfc3339(OffsetDateTime::now_utc()),
        })
    }

    /// The verifiable bundle of the account's log up to its latest
    /// checkpoint (signed now if the log grew), as JSON Lines, sent to `out`
    /// chunk by chunk so a large log never sits in memory whole.
    pub async fn export_bundle(
        &self,
        account: AccountId,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> LedgerResult<()> {
        use thetazero_audit::bundle::Line;
        let b64 = |h: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h);
        let line = |l: &Line| {
            let mut s = serde_json::to_vec(l).unwrap_or_default();
            s.push(b'\n');
            s
        };
        let send = |bytes: Vec<u8>| {
            let out = out.clone();
            async move {
                out.send(bytes)
                    .await
                    .map_err(|_| LedgerError::Invalid("the client went away".into()))
            }
        };
        let latest = self.checkpoint(account).await?;
        send(line(&Line::Header {
            format: "tz.audit.bundle.v1".into(),
            origin: self.origin(account),
            verifier_key: self.verifier.as_str().to_string(),
        }))
        .await?;
        let Some(latest) = latest else { return Ok(()) };
        let mut from = 0;
        while from < latest.size {
            let leaves = self
                .store
                .audit_leaves(account, from, latest.size, PAGE)
                .await?;
            if leaves.is_empty() {
                return Err(integrity(format!(
                    "leaves stop at {from} of {}",
                    latest.size
                )));
            }
            let mut chunk = Vec::with_capacity(leaves.len() * 700);
            for (index, bytes) in &leaves {
                chunk.extend(line(&Line::Entry {
                    leaf_index: *index,
                    leaf_b64: b64(bytes),
                    leaf_hash: b64(&merkle::leaf_hash(bytes).0),
                }));
            }
            from = leaves.last().map(|(i, _)| i + 1).unwrap_or(latest.size);
            send(chunk).await?;
        }
        let mut previous: Option<u64> = None;
        let mut start = 1;
        loop {
            let checkpoints = self
                .store
                .checkpoints(account, start, latest.size, PAGE)
                .await?;
            if checkpoints.is_empty() {
                break;
            }
            for c in &checkpoints {
                let mut chunk = line(&Line::Checkpoint {
                    note: c.note.clone(),
                });
                if let Some(p) = previous {
                    let proof = self.consistency_proof(account, p, c.size).await?;
                    chunk.extend(line(&Line::Consistency {
                        from: p,
                        to: c.size,
                        proof: proof.iter().map(|h| b64(&h.0)).collect(),
                    }));
                }
                previous = Some(c.size);
                send(chunk).await?;
            }
            start = checkpoints
                .last()
                .map(|c| c.size + 1)
                .unwrap_or(latest.size + 1);
        }
        let mut chunk = Vec::new();
        for a in self.store.anchors(account, 0, latest.size).await? {
            chunk.extend(line(&Line::Anchor {
                kind: a.kind,
                checkpoint_size: a.checkpoint_size,
                status: a.status,
                external_ref: a.external_ref,
            }));
        }
        if !chunk.is_empty() {
            send(chunk).await?;
        }
        Ok(())
    }

    /// Whether the newest checkpoint of the account's log is anchored.
    pub async fn anchored(&self, account: AccountId) -> LedgerResult<bool> {
        if !self.anchor.confirms() {
            return Ok(false);
        }
        let Some(latest) = self.store.latest_checkpoint(account).await? else {
            return Ok(false);
        };
        Ok(self
            .store
            .last_confirmed_anchor(account, self.anchor.kind())
            .await?
            .is_some_and(|a| a.checkpoint_size >= latest.size))
    }

    /// One round of the anchoring heartbeat: anchors every log whose latest
    /// checkpoint is due (new, unchanged for an interval, or a failure whose
    /// backoff ran out), recording each attempt as pending, then confirmed or
    /// failed. Answers how many anchorings were confirmed.
    pub async fn anchor_round(&self, heartbeat: &Heartbeat) -> LedgerResult<usize> {
        if !self.anchor.confirms() {
            return Ok(0);
        }
        let kind = self.anchor.kind();
        let mut states = Vec::new();
        let mut accounts = HashMap::new();
        for (account, _) in self.store.audit_logs().await? {
            let Some(latest) = self.checkpoint(account).await? else {
                continue;
            };
            let confirmed = self.store.last_confirmed_anchor(account, kind).await?;
            let last = self.store.last_anchor(account, kind).await?;
            let origin = self.origin(account);
            accounts.insert(origin.clone(), account);
            states.push(LogAnchorState {
                origin,
                latest_size: latest.size,
                confirmed_size: confirmed.map(|c| c.checkpoint_size).unwrap_or(0),
                last: last.map(|a| Attempt {
                    at: std::time::SystemTime::from(a.updated_at),
                    status: match a.status.as_str() {
                        "confirmed" => AnchorStatus::Confirmed,
                        "failed" => AnchorStatus::Failed {
                            consecutive_failures: a.failures,
                            retryable: a.retryable,
                        },
                        _ => AnchorStatus::Pending,
                    },
                }),
            });
        }
        let mut confirmed = 0;
        for due in heartbeat.due(std::time::SystemTime::now(), &states) {
            let Some(&account) = accounts.get(&due.origin) else {
                continue;
            };
            let Some(checkpoint) = self
                .store
                .checkpoint_covering(account, due.size)
                .await?
                .filter(|c| c.size == due.size)
            else {
                continue;
            };
            let failures = self
                .store
                .last_anchor(account, kind)
                .await?
                .filter(|a| a.status == "failed")
                .map(|a| a.failures)
                .unwrap_or(0);
            let record = |status: &str,
                          external_ref: Option<String>,
                          detail: Value,
                          failures: u32,
                          retryable: bool| {
                AnchorRecord {
                    checkpoint_size: due.size,
                    kind: kind.to_string(),
                    status: status.to_string(),
                    external_ref,
                    detail,
                    failures,
                    retryable,
                    updated_at: OffsetDateTime::now_utc(),
                }
            };
            let reason = json!({"reason": format!("{:?}", due.reason)});
            self.store
                .put_anchor(account, record("pending", None, reason, failures, true))
                .await?;
            let mut previous = due.previous_size.min(due.size);
            let mut outcome = None;
            // One resynchronisation: a witness that knows another size says
            // so, and gets a proof from that size instead.
            for _ in 0..2 {
                let proof = self.consistency_proof(account, previous, due.size).await?;
                let request = AnchorRequest {
                    origin: due.origin.clone(),
                    checkpoint_note: checkpoint.note.clone(),
                    size: due.size,
                    previous_size: previous,
                    consistency_proof: proof.iter().map(|h| h.0).collect(),
                };
                let result = self.anchor.anchor(request).await;
                let resync = match &result {
                    Err(e) => e
                        .witness_size()
                        .filter(|w| *w != previous && *w <= due.size),
                    Ok(_) => None,
                };
                outcome = Some(result);
                match resync {
                    Some(w) => previous = w,
                    None => break,
                }
            }
            match outcome {
                Some(Ok(receipt)) => {
                    let detail = serde_json::to_value(&receipt).unwrap_or(Value::Null);
                    let external = receipt.external_ref.clone().or(receipt.cosignature.clone());
                    self.store
                        .put_anchor(account, record("confirmed", external, detail, 0, true))
                        .await?;
                    thetazero_core::telemetry::global().anchored("confirmed");
                    confirmed += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(account = account.get(), size = due.size, code = e.code(), error = %e, "anchoring failed");
                    let detail = json!({"code": e.code(), "message": e.to_string()});
                    self.store
                        .put_anchor(
                            account,
                            record("failed", None, detail, failures + 1, e.is_retryable()),
                        )
                        .await?;
                    thetazero_core::telemetry::global().anchored("failed");
                }
                None => {}
            }
        }
        Ok(confirmed)
    }

    /// The account's events as CSV for human review, leaf index and hash
    /// included; it says on its first line that it is not verifiable alone.
    pub async fn export_csv(
        &self,
        account: AccountId,
        query: AuditQuery,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> LedgerResult<()> {
        let mut cursor = query.after;
        let mut first = true;
        loop {
            let page = self
                .store
                .query_audit(
                    account,
                    &AuditQuery {
                        after: cursor,
                        limit: PAGE,
                        ..query.clone()
                    },
                )
                .await?;
            if page.items.is_empty() && !first {
                break;
            }
            let exporter_out = Vec::with_capacity(page.items.len() * 400);
            let mut exporter = if first {
                thetazero_audit::csv::CsvExporter::new(exporter_out).map_err(integrity)?
            } else {
                thetazero_audit::csv::CsvExporter::continuing(exporter_out)
            };
            first = false;
            if let (Some(lo), Some(hi)) = (page.items.first(), page.items.last()) {
                let leaves: HashMap<u64, Vec<u8>> = self
                    .store
                    .audit_leaves(
                        account,
                        lo.leaf_index,
                        hi.leaf_index + 1,
                        hi.leaf_index - lo.leaf_index + 1,
                    )
                    .await?
                    .into_iter()
                    .collect();
                for record in &page.items {
                    let bytes = leaves.get(&record.leaf_index).ok_or_else(|| {
                        integrity(format!("leaf {} is missing", record.leaf_index))
                    })?;
                    exporter
                        .write_leaf(Some(record.id.get()), record.leaf_index, bytes)
                        .map_err(integrity)?;
                }
            }
            let bytes = exporter.finish().map_err(integrity)?;
            out.send(bytes)
                .await
                .map_err(|_| LedgerError::Invalid("the client went away".into()))?;
            match page.items.last() {
                Some(last) if page.items.len() as u64 == PAGE => cursor = Some(last.leaf_index),
                _ => break,
            }
        }
        Ok(())
    }

    /// Convenience for tests and the CLI: the account's whole bundle.
    pub async fn bundle_bytes(&self, account: AccountId) -> LedgerResult<Vec<u8>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let collect = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(chunk) = rx.recv().await {
                all.extend(chunk);
            }
            all
        });
        self.export_bundle(account, tx).await?;
        collect.await.map_err(integrity)
    }

    /// `(leaf_index, leaf_hash)` of an execution's final event.
    pub async fn execution_leaf(
        &self,
        account: AccountId,
        execution: ExecutionId,
    ) -> LedgerResult<Option<AuditRecord>> {
        let page = self
            .store
            .query_audit(
                account,
                &AuditQuery {
                    execution_id: Some(execution),
                    action_types: vec![AuditAction::ExecutionCompleted.to_string()],
                    limit: 1,
                    ..Default::default()
                },
            )
            .await?;
        Ok(page.items.into_iter().next())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
