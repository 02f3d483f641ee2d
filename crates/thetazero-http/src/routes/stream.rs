//! The live audit stream (Server-Sent Events) at `/api/v1/sdk/audit/stream`
//! (and the spec's `/api/sdk/audit/stream`): `connected`, then `audit` events whose `id:` is
//! the leaf index, `checkpoint` when the log gets a new signed checkpoint,
//! `keepalive` (also as a comment line), and `timeout` with the position to
//! resume from. `Last-Event-ID` (or `?after=`) resumes with no gap and no
//! duplicate: the stream replays from the database, then goes live.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use thetazero_api::types::{
    StreamCheckpoint, StreamConnected, StreamKeepalive, StreamTimeout, StreamTokenResponse,
};
use thetazero_core::audit::{AuditQuery, AuditRecord};
use thetazero_core::model::{AccountId, AgentId, ExecutionId, KeyId};
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;

use thetazero_ledger::feed::Subscription;
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

fn frame(event: &str, id: Option<u64>, data: &impl Serialize) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    // Serialising a wire type to a string does not fail.
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    out.into_bytes()
}

struct Filters {
    execution_id: Option<ExecutionId>,
    agent_id: Option<AgentId>,
}

impl Filters {
    fn keep(&self, r: &AuditRecord) -> bool {
        self.execution_id
            .is_none_or(|e| r.event.execution_id == Some(e))
            && self.agent_id.is_none_or(|a| r.event.agent_id == Some(a))
    }
}

enum Phase {
    Connect,
    Replay,
    Live,
    Done,
}

/// One stream's position: the replay from the database, then the live feed.
struct Progress {
    state: AppState,
    account: AccountId,
    /// The key the stream was opened with (directly or through a token).
    key: KeyId,
    revoked: tokio::sync::broadcast::Receiver<KeyId>,
    filters: Filters,
    since: Option<OffsetDateTime>,
    next: u64,
    size: u64,
    phase: Phase,
    live: Subscription,
    keepalive: Option<tokio::time::Interval>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    checkpoint_size: u64,
}

impl Progress {
    fn resume_after(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    fn timeout(&self, reason: &str) -> StreamTimeout {
        StreamTimeout {
            reason: reason.into(),
            resume_after: self.resume_after(),
        }
    }

    /// The next bytes to send; `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.phase {
                Phase::Connect => {
                    self.phase = Phase::Replay;
                    return Some(frame(
                        "connected",
                        None,
                        &StreamConnected {
                            account_id: self.account.get(),
                            position: self.next,
                            log_size: self.size,
                        },
                    ));
                }
                Phase::Replay => {
                    let query = AuditQuery {
                        after: self.resume_after(),
                        from: self.since,
                        agent_id: self.filters.agent_id,
                        execution_id: self.filters.execution_id,
                        limit: REPLAY_PAGE,
                        ..Default::default()
                    };
                    let page = match self.state.store.query_audit(self.account, &query).await {
                        Ok(p) => p.items,
                        Err(e) => {
                            tracing::warn!(account = self.account.get(), error = %e, "audit stream replay failed");
                            self.phase = Phase::Done;
                            return Some(frame("timeout", None, &self.timeout("unavailable")));
                        }
                    };
                    if (page.len() as u64) < REPLAY_PAGE {
                        let settings = &self.state.settings;
                        let mut keepalive = tokio::time::interval_at(
                            tokio::time::Instant::now() + settings.stream_keepalive,
                            settings.stream_keepalive,
                        );
                        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        self.keepalive = Some(keepalive);
                        self.deadline =
                            Some(Box::pin(tokio::time::sleep(settings.stream_max_duration)));
                        self.phase = Phase::Live;
                    }
                    let mut out = Vec::new();
                    for r in &page {
                        self.next = r.leaf_index + 1;
                        out.extend(frame("audit", Some(r.leaf_index), &views::audit(r)));
                    }
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                Phase::Live => {
                    let (Some(keepalive), Some(deadline)) =
                        (self.keepalive.as_mut(), self.deadline.as_mut())
                    else {
                        return None;
                    };
                    tokio::select! {
                        changed = self.revoked.recv() => {
                            // The key was revoked or its scopes changed here:
                            // the stream goes on only if it may still read.
                            if matches!(changed, Ok(id) if id == self.key)
                                && !crate::auth::key_may_stream(&self.state, self.account, self.key)
                                    .await
                                    .unwrap_or(false)
                            {
                                self.phase = Phase::Done;
                                return Some(frame("timeout", None, &self.timeout("key_revoked")));
                            }
                        }
                        received = self.live.recv() => match received {
                            Ok(r) => {
                                // Records replayed already come again live: skip them.
                                if r.leaf_index < self.next {
                                    continue;
                                }
                                self.next = r.leaf_index + 1;
                                if self.filters.keep(&r) {
                                    return Some(frame("audit", Some(r.leaf_index), &views::audit(&r)));
                                }
                            }
                            Err(RecvError::Lagged(_)) => {
                                // A consumer that cannot keep up resumes from the database.
                                self.phase = Phase::Done;
                                return Some(frame("timeout", None, &self.timeout("lagging")));
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        _ = keepalive.tick() => {
                            // A key revoked on another replica, or narrowed
                            // so that it may no longer read, ends the stream.
                            match crate::auth::key_may_stream(&self.state, self.account, self.key).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    self.phase = Phase::Done;
                                    return Some(frame("timeout", None, &self.timeout("key_revoked")));
                                }
                                Err(_) => {
                                    self.phase = Phase::Done;
                                    return Some(frame("timeout", None, &self.timeout("unavailable")));
                                }
                            }
                            let mut bytes = b": keepalive\n\n".to_vec();
                            bytes.extend(frame("keepalive", None, &StreamKeepalive { position: self.next, at: views::rfc3339(OffsetDateTime::now_utc()) }));
                            if let Ok(Some(c)) = self.state.store.latest_checkpoint(self.account).await {
                                if c.size > self.checkpoint_size {
                                    self.checkpoint_size = c.size;
                                    bytes.extend(frame("checkpoint", None, &StreamCheckpoint { size: c.size, note: c.note }));
                                }
                            }
                            return Some(bytes);
                        }
                        _ = deadline => {
                            self.phase = Phase::Done;
                            return Some(frame("timeout", None, &self.timeout("limit")));
                        }
                    }
                }
                Phase::Done => return None,
            }
        }
    }
}

/// The live audit stream (SSE) of the caller's account: `connected`
/// ([`StreamConnected`]), `audit` (an audit event, `id:` its leaf index),
/// `checkpoint`, `keepalive` (also as a comment line) and a last `timeout`.
#[utoipa::path(get, path = "/api/v1/sdk/audit/stream", operation_id = "audit_stream", tag = "audit", params(StreamParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this leaf index")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "Events `connected`, `audit`, `checkpoint`, `keepalive`, `timeout`, each with a JSON `data:` line")),
    security(("bearer" = []), ("stream_token" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(access): Extension<StreamAccess>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let account = access.account;
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| HttpError::invalid("Last-Event-ID must be a leaf index"))?,
        ),
        None => params.after,
    };
    // A leaf index is an int64 (the document's and the stores'); past that,
    // `i + 1` below would overflow.
    if resume.is_some_and(|i| i > i64::MAX as u64) {
        return Err(HttpError::invalid(format!(
            "query parameter \"after\" (or Last-Event-ID) must be a leaf index, at most {}",
            i64::MAX
        )));
    }
    let since = params
        .since
        .as_deref()
        .map(|s| parse_time("since", s, false))
        .transpose()?;
    let filters = Filters {
        execution_id: params.execution_id.map(ExecutionId::new),
        agent_id: params.agent_id.map(AgentId::new),
    };
    // Subscribe before reading anything, so nothing appended meanwhile is missed.
    let live = state.feed.subscribe(account).await;
    let size = state.store.audit_log_size(account).await?;
    // Where replay starts: after the resumed event, from `since`, or (live
    // only) at the end of the log.
    let next = match (resume, since) {
        (Some(i), _) => i + 1,
        (None, Some(_)) => 0,
        (None, None) => size,
    };
    // The response body drives the stream: nothing runs while the client
    // is not reading, and a client that goes away drops it all.
    let revoked = state.revoked_keys.subscribe();
    let progress = Progress {
        state,
        account,
        key: access.key,
        revoked,
        filters,
        since,
        next,
        size,
        phase: Phase::Connect,
        live,
        keepalive: None,
        deadline: None,
        checkpoint_size: 0,
    };
    let body = futures_util::stream::unfold(progress, |mut p| async move {
        p.next_chunk()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), p))
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

/// A short-lived, read-only token that opens the caller's audit stream, for
/// browsers (`EventSource` cannot send headers). Valid for five minutes.
#[utoipa::path(post, path = "/api/v1/sdk/audit/stream-token", operation_id = "create_stream_token", tag = "audit",
    responses((status = 200, body = StreamTokenResponse)), security(("bearer" = [])))]
pub async fn stream_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<StreamTokenResponse>> {
    let expires = OffsetDateTime::now_utc().unix_timestamp() + stream_token::TTL_SECS;
    let token = stream_token::issue(
        &state.stream_secret(),
        caller.account(),
        caller.key.id,
        expires,
    );
    Ok(Json(StreamTokenResponse {
        success: true,
        stream_url: format!("/api/sdk/audit/stream?token={token}"),
        token,
        expires_at: OffsetDateTime::from_unix_timestamp(expires)
            .map(views::rfc3339)
            .unwrap_or_default(),
    }))
}
