//! The verifiable audit log over HTTP: the verifier key, signed checkpoints,
//! record proofs, consistency proofs, exports, and signed execution receipts.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use thetazero_api::types::{
    AnchorView, CheckpointResponse, ConsistencyResponse, ConsistencyToLatest, ExecutionReceipt,
    RecordProofResponse, VerifierKeyResponse,
};
use thetazero_api::ErrorCode;
use thetazero_core::model::ExecutionId;
use thetazero_ledger::LedgerError;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Id, Query};
use crate::routes::audit::filtered_query;
use crate::state::AppState;
use crate::views;

impl From<LedgerError> for HttpError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound => HttpError::not_found("audit record"),
            LedgerError::Invalid(m) => HttpError::invalid(m),
            LedgerError::Store(s) => s.into(),
            LedgerError::Integrity(m) => HttpError::internal(format!("audit log integrity: {m}")),
        }
    }
}

/// The deployment's audit verifier key, in the C2SP verifier-key form.
#[utoipa::path(get, path = "/api/v1/sdk/audit/key", operation_id = "audit_key", tag = "audit",
    responses((status = 200, body = VerifierKeyResponse)))]
pub async fn key(State(state): State<AppState>) -> Json<VerifierKeyResponse> {
    let key = state.ledger.verifier_key();
    Json(VerifierKeyResponse {
        success: true,
        verifier_key: key.as_str().into(),
        key_name: key.name().into(),
    })
}

/// The latest signed checkpoint of the caller's log (signed now if the log grew).
#[utoipa::path(get, path = "/api/v1/sdk/audit/checkpoint", operation_id = "audit_checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointResponse)),
    security(("bearer" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<CheckpointResponse>> {
    let latest = state.ledger.checkpoint(caller.account()).await?;
    Ok(Json(CheckpointResponse {
        success: true,
        origin: state.ledger.origin(caller.account()),
        size: latest.as_ref().map(|c| c.size).unwrap_or(0),
        checkpoint: latest.map(|c| c.note),
        verifier_key: state.ledger.verifier_key().as_str().into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size (at most the log's size).
    pub to: u64,
}

/// A consistency proof between two sizes of the caller's log.
#[utoipa::path(get, path = "/api/v1/sdk/audit/consistency", operation_id = "audit_consistency", tag = "audit", params(ConsistencyParams),
    responses((status = 200, body = ConsistencyResponse)),
    security(("bearer" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ConsistencyParams>,
) -> HttpResult<Json<ConsistencyResponse>> {
    let size = state.store.audit_log_size(caller.account()).await?;
    if params.to > size || params.from > params.to {
        return Err(HttpError::invalid(format!(
            "need 0 <= from <= to <= {size} (the log's size)"
        )));
    }
    let proof = state
        .ledger
        .consistency_proof(caller.account(), params.from, params.to)
        .await?;
    Ok(Json(ConsistencyResponse {
        success: true,
        from: params.from,
        to: params.to,
        proof: proof.iter().map(|h| views::b64(&h.0)).collect(),
    }))
}

/// Proof material for one record: leaf bytes, inclusion proof, signed
/// checkpoint, consistency proof to the latest checkpoint, anchors; plus the
/// server's own verdict (`chain_valid`), which clients should recompute.
#[utoipa::path(get, path = "/api/v1/sdk/audit/records/{id}/proof", operation_id = "audit_record_proof", tag = "audit",
    params(("id" = i64, Path, minimum = 1, description = "Audit record id")),
    responses((status = 200, body = RecordProofResponse)),
    security(("bearer" = [])))]
pub async fn record_proof(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id<thetazero_core::model::AuditRecordId>,
) -> HttpResult<Json<RecordProofResponse>> {
    let p = state.ledger.record_proof(caller.account(), id).await?;
    Ok(Json(RecordProofResponse {
        success: true,
        record_id: p.record_id,
        log_origin: p.log_origin,
        leaf_index: p.leaf_index,
        leaf_b64: p.leaf_b64,
        leaf_hash: p.leaf_hash,
        checkpoint: p.checkpoint,
        inclusion_proof: p.inclusion_proof,
        consistency_to_latest: p.consistency_to_latest.map(|c| ConsistencyToLatest {
            from: c.from,
            to: c.to,
            proof: c.proof,
            latest_checkpoint: c.latest_checkpoint,
        }),
        anchors: p
            .anchors
            .into_iter()
            .map(|a| AnchorView {
                kind: a.kind,
                checkpoint_size: a.checkpoint_size,
                status: a.status,
                external_ref: a.external_ref,
            })
            .collect(),
        anchor_tx_hash: p.anchor_tx_hash,
        chain_valid: p.chain_valid,
        verified_at: p.verified_at,
        verifier_key: state.ledger.verifier_key().as_str().into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `bundle` (verifiable, JSON Lines) or `csv` (for review).
    #[param(pattern = "^(bundle|csv)$")]
    pub format: String,
    /// CSV only: start, RFC 3339 or YYYY-MM-DD.
    pub from: Option<String>,
    /// CSV only: end, RFC 3339 or YYYY-MM-DD.
    pub to: Option<String>,
    /// CSV only: comma-separated action types.
    #[serde(rename = "actionTypes")]
    pub action_types: Option<String>,
    #[serde(rename = "violationsOnly")]
    pub violations_only: Option<bool>,
}

/// Export the caller's log: `bundle` for offline verification, `csv` for review.
#[utoipa::path(get, path = "/api/v1/sdk/audit/export", operation_id = "audit_export", tag = "audit", params(ExportParams),
    responses((status = 200, description = "The export, streamed: JSON Lines for `bundle`, CSV for `csv`",
        content((String = "application/x-ndjson"), (String = "text/csv")))),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ExportParams>,
) -> HttpResult<Response> {
    let account = caller.account();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let (content_type, name) = match params.format.as_str() {
        "bundle" => {
            if params.from.is_some() || params.to.is_some() || params.action_types.is_some() {
                return Err(HttpError::invalid(
                    "a bundle always holds the whole log, so that its root can be recomputed; filters apply to csv",
                ));
            }
            let ledger = state.ledger.clone();
            tokio::spawn(async move {
                if let Err(e) = ledger.export_bundle(account, tx).await {
                    tracing::warn!(account = account.get(), error = %e, "bundle export stopped");
                }
            });
            ("application/x-ndjson", "audit-bundle.jsonl")
        }
        "csv" => {
            let query = filtered_query(
                params.from.as_deref(),
                params.to.as_deref(),
                params.action_types.as_deref(),
                params.violations_only,
            )?;
            let ledger = state.ledger.clone();
            tokio::spawn(async move {
                if let Err(e) = ledger.export_csv(account, query, tx).await {
                    tracing::warn!(account = account.get(), error = %e, "csv export stopped");
                }
            });
            ("text/csv; charset=utf-8", "audit.csv")
        }
        other => {
            return Err(HttpError::new(
                ErrorCode::InvalidRequest,
                format!("query parameter \"format\" must be bundle or csv, not {other:?}"),
            ))
        }
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::HeaderName::from_static("x-thetazero-notice"),
                if name.ends_with(".csv") {
                    thetazero_ledger::CSV_NOTICE.to_string()
                } else {
                    "A verifiable bundle: check it with `thetazero audit verify BUNDLE --key VKEY_FILE`.".to_string()
                },
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The signed receipt of an execution (`verifyExecution`): code hash, input
/// and output digests, limits, isolation actually used (`tee_mode`), audit
/// range and the checkpoint covering it.
#[utoipa::path(get, path = "/api/v1/sdk/executions/{id}/verify", operation_id = "verify_execution", tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Execution id")),
    responses((status = 200, body = ExecutionReceipt)),
    security(("bearer" = [])))]
pub async fn verify_execution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> HttpResult<Json<ExecutionReceipt>> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .map(ExecutionId::new)
        .ok_or_else(|| HttpError::not_found("execution"))?;
    let execution = state
        .store
        .get_execution(caller.account(), id)
        .await?
        .ok_or_else(|| HttpError::not_found("execution"))?;
    let receipt = state
        .ledger
        .execution_receipt(caller.account(), &execution)
        .await?;
    Ok(Json(views::receipt(receipt)))
}
