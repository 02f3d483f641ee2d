//! The live audit stream (Server-Sent Events) at `/api/sdk/audit/stream` and
//! `/api/v1/sdk/audit/stream`: `connected`, then `audit` events whose `id:` is
//! the leaf index, `checkpoint` when the log gets a new signed checkpoint,
//! `keepalive` (also as a comment line), and `timeout` with the position to
//! resume from. `Last-Event-ID` (or `?after=`) resumes with no gap and no
//! duplicate: the stream replays from the database, then goes live.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use thetazero_api::ErrorBody;
use thetazero_core::audit::{AuditQuery, AuditRecord};
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::auth::{Caller, StreamAccess};
use crate::error::{HttpError, HttpResult};
use crate::extract::Query;
use crate::routes::audit::parse_time;
use crate::state::AppState;
use crate::{stream_token, views};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only events of this execution.
    #[serde(rename = "executionId")]
    pub execution_id: Option<i64>,
    /// Only events of this agent.
    #[serde(rename = "agentId")]
    pub agent_id: Option<i64>,
    /// Replay events from this time (RFC 3339 or YYYY-MM-DD) before going live.
    pub since: Option<String>,
    /// Resume after this leaf index (as `Last-Event-ID`).
    pub after: Option<u64>,
    /// A stream token from `POST /api/v1/sdk/audit/stream-token`, for clients
    /// that cannot send an Authorization header.
    pub token: Option<String>,
}

const REPLAY_PAGE: u64 = 500;

fn frame(event: &str, id: Option<u64>, data: &Value) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    out.into_bytes()
}

struct Filters {
    execution_id: Option<i64>,
    agent_id: Option<i64>,
}

impl Filters {
    fn keep(&self, r: &AuditRecord) -> bool {
        self.execution_id
            .is_none_or(|e| r.event.execution_id == Some(e))
            && self.agent_id.is_none_or(|a| r.event.agent_id == Some(a))
    }
}

async fn stream(
    state: AppState,
    account: i64,
    params: StreamParams,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| HttpError::invalid("Last-Event-ID must be a leaf index"))?,
        ),
        None => params.after,
    };
    let since = params
        .since
        .as_deref()
        .map(|s| parse_time("since", s, false))
        .transpose()?;
    let filters = Filters {
        execution_id: params.execution_id,
        agent_id: params.agent_id,
    };
    // Subscribe before reading anything, so nothing appended meanwhile is missed.
    let mut live = state.feed.subscribe(account).await;
    let size = state.store.audit_log_size(account).await?;
    // Where replay starts: after the resumed event, from `since`, or (live
    // only) at the end of the log.
    let next = match (resume, since) {
        (Some(i), _) => i + 1,
        (None, Some(_)) => 0,
        (None, None) => size,
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    let settings = state.settings.clone();
    tokio::spawn(async move {
        let send = |bytes: Vec<u8>| {
            let tx = tx.clone();
            async move { tx.send(bytes).await.is_ok() }
        };
        let mut next = next;
        if !send(frame(
            "connected",
            None,
            &json!({"account_id": account, "position": next, "log_size": size}),
        ))
        .await
        {
            return;
        }
        // Replay from the database.
        loop {
            let query = AuditQuery {
                after: next.checked_sub(1),
                from: since,
                agent_id: filters.agent_id,
                execution_id: filters.execution_id,
                limit: REPLAY_PAGE,
                ..Default::default()
            };
            let page = match state.store.query_audit(account, &query).await {
                Ok(p) => p.items,
                Err(e) => {
                    tracing::warn!(account, error = %e, "audit stream replay failed");
                    let _ = send(frame(
                        "timeout",
                        None,
                        &json!({"reason": "unavailable", "resume_after": next.checked_sub(1)}),
                    ))
                    .await;
                    return;
                }
            };
            let full = page.len() as u64 == REPLAY_PAGE;
            for r in &page {
                next = r.leaf_index + 1;
                if !send(frame("audit", Some(r.leaf_index), &json!(views::audit(r)))).await {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        let mut checkpoint_size = 0;
        let mut keepalive = tokio::time::interval(settings.stream_keepalive);
        keepalive.tick().await;
        let deadline = tokio::time::sleep(settings.stream_max_duration);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(r) => {
                        // Records replayed already come again live: skip them.
                        if r.leaf_index < next {
                            continue;
                        }
                        next = r.leaf_index + 1;
                        if filters.keep(&r) && !send(frame("audit", Some(r.leaf_index), &json!(views::audit(&r)))).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // A consumer that cannot keep up resumes from the database.
                        let _ = send(frame("timeout", None, &json!({"reason": "lagging", "resume_after": next.checked_sub(1)}))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = keepalive.tick() => {
                    let mut bytes = b": keepalive\n\n".to_vec();
                    bytes.extend(frame("keepalive", None, &json!({"position": next, "at": views::rfc3339(OffsetDateTime::now_utc())})));
                    if let Ok(Some(c)) = state.store.latest_checkpoint(account).await {
                        if c.size > checkpoint_size {
                            checkpoint_size = c.size;
                            bytes.extend(frame("checkpoint", None, &json!({"size": c.size, "note": c.note})));
                        }
                    }
                    if !send(bytes).await {
                        return;
                    }
                }
                _ = &mut deadline => {
                    let _ = send(frame("timeout", None, &json!({"reason": "limit", "resume_after": next.checked_sub(1)}))).await;
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The live audit stream (SSE) of the caller's account.
#[utoipa::path(get, path = "/api/sdk/audit/stream", tag = "audit", params(StreamParams),
    responses((status = 200, description = "text/event-stream: connected, audit, checkpoint, keepalive, timeout"),
               (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream_spec(
    State(state): State<AppState>,
    Extension(access): Extension<StreamAccess>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    stream(state, access.account, params, headers).await
}

/// The live audit stream (same as `/api/sdk/audit/stream`).
#[utoipa::path(get, path = "/api/v1/sdk/audit/stream", tag = "audit", params(StreamParams),
    responses((status = 200, description = "text/event-stream"), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream_v1(
    State(state): State<AppState>,
    Extension(access): Extension<StreamAccess>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    stream(state, access.account, params, headers).await
}

/// A short-lived, read-only token that opens the caller's audit stream, for
/// browsers (`EventSource` cannot send headers). Valid for five minutes.
#[utoipa::path(post, path = "/api/v1/sdk/audit/stream-token", tag = "audit",
    responses((status = 200, description = "`{token, expires_at, stream_url}`")), security(("bearer" = [])))]
pub async fn stream_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<Value>> {
    let expires = OffsetDateTime::now_utc().unix_timestamp() + stream_token::TTL_SECS;
    let token = stream_token::issue(&state.stream_secret(), caller.account(), expires);
    Ok(Json(json!({
        "success": true,
        "stream_url": format!("/api/sdk/audit/stream?token={token}"),
        "token": token,
        "expires_at": OffsetDateTime::from_unix_timestamp(expires).map(views::rfc3339).unwrap_or_default(),
    })))
}
