//! thetazero's HTTP API: the axum router, authentication and scopes, error
//! mapping, metrics and the OpenAPI document.
//!
//! Handlers authenticate, parse, call one use case of the runtime (or of the
//! compliance crate) and map its answer; no handler writes an audit event
//! or holds a domain rule. It receives an `AppState` holding
//! `Arc<dyn Store>` (for reads) and never names a storage backend; choosing
//! one is the binary's job.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod session;
pub mod state;
pub mod stream_token;
pub mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::RngCore;
use thetazero_api::ErrorCode;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{every_route, generate_key, hash_key, GeneratedKey, ROUTES, SPEC_PATHS};
pub use error::{HttpError, REQUEST_ID};
pub use state::{AppState, Settings};

use crate::error::error_response;
use crate::metrics::{RequestLabels, RouteLabels};

#[derive(OpenApi)]
#[openapi(
    info(title = "thetazero", description = "A self-hostable, governed runtime for AI agents."),
    modifiers(&BearerAuth),
    components(schemas(thetazero_api::ErrorBody, thetazero_api::types::SuccessResponse, thetazero_api::types::SessionView, thetazero_api::types::SignInRequest,
        thetazero_api::types::StreamConnected, thetazero_api::types::StreamKeepalive, thetazero_api::types::StreamCheckpoint, thetazero_api::types::StreamTimeout,
        thetazero_api::types::AuditEventView)),
    tags((name = "agents"), (name = "context"), (name = "executions"), (name = "keys"), (name = "accounts"), (name = "audit"), (name = "killswitch"), (name = "approvals"), (name = "compliance"), (name = "operations"), (name = "dashboard"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tzk_...")
                    .build(),
            ),
        );
    }
}

/// The routes and their OpenAPI description, built together so that neither
/// can drift from the other. A route with a spec path (`auth::SPEC_PATHS`)
/// is served there too, by the same handler.
fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    let routes = [
        routes!(ops::healthz),
        routes!(ops::readyz),
        routes!(ops::metrics),
        routes!(accounts::create),
        routes!(keys::create, keys::list),
        routes!(keys::get, keys::revoke, keys::set_scopes),
        routes!(agents::register, agents::list),
        routes!(agents::get, agents::patch, agents::delete),
        routes!(context::get, context::put, context::delete),
        routes!(executions::execute),
        routes!(executions::list),
        routes!(executions::get),
        routes!(killswitch::kill),
        routes!(killswitch::set_global, killswitch::get_global),
        routes!(permission_requests::create, permission_requests::list),
        routes!(permission_requests::get),
        routes!(permission_requests::approve),
        routes!(permission_requests::deny),
        routes!(audit::query),
        routes!(stream::stream),
        routes!(stream::stream_token),
        routes!(audit_proofs::key),
        routes!(audit_proofs::checkpoint),
        routes!(audit_proofs::consistency),
        routes!(audit_proofs::record_proof),
        routes!(audit_proofs::export),
        routes!(audit_proofs::verify_execution),
        routes!(compliance::frameworks),
        routes!(compliance::status),
        routes!(compliance::report),
        routes!(compliance::component_definition),
        routes!(compliance::package),
        routes!(compliance::drill),
    ];
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi());
    for route in routes {
        let spec = route.1.paths.keys().find_map(|p| auth::spec_path(p));
        if let Some(spec) = spec {
            api = api.route(spec, route.2.clone());
        }
        api = api.routes(route);
    }
    api
}

/// The OpenAPI 3.1 document of every route, as `/api/v1/openapi.json`
/// serves it.
pub fn openapi() -> serde_json::Value {
    openapi::complete(api().split_for_parts().1)
}

/// Builds the whole application.
pub fn router(state: AppState) -> Router {
    let (api_router, doc) = api().split_for_parts();
    let doc = openapi::complete(doc);
    let doc = Arc::new(doc.to_string());
    api_router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        // The dashboard and its sign-in authenticate by themselves: the page
        // is public, and the session routes take a key or a cookie.
        .route(
            "/api/v1/session",
            axum::routing::post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .merge(dashboard::routes())
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The operator's metrics listener (`metrics_listen`): `/metrics` without a
/// key, and nothing else. Bind it where only the monitoring system reaches
/// it; agents' `http_request` cannot (HTTPS only, and loopback and private
/// addresses are refused).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move {
                routes::ops::exposition(&state).await.into_response()
            }),
        )
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .with_state(state)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(&thetazero_api::ApiError::new(
        ErrorCode::Internal,
        "internal error; see the server log for this request id",
    ))
}

fn request_id(req: &Request) -> String {
    // Accept a caller's id when it is short and plain, so traces can be joined
    // across services; otherwise make one.
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        if !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return v.to_string();
        }
    }
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("req_{}", hex::encode(bytes))
}

/// What a response tells the request log: the execution it made, if any, and
/// its outcome (an execution's status, or the error code).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub execution: Option<i64>,
    pub outcome: &'static str,
}

/// The agent and execution a request names in its path (`/agents/{id}`,
/// `{eid}`), read against the matched route template.
fn path_ids(template: &str, path: &str) -> (Option<i64>, Option<i64>) {
    let (mut agent, mut execution) = (None, None);
    let mut previous = "";
    for (t, p) in template.split('/').zip(path.split('/')) {
        match (previous, t) {
            ("agents", "{id}") => agent = p.parse().ok(),
            (_, "{eid}") => execution = p.parse().ok(),
            _ => {}
        }
        previous = t;
    }
    (agent, execution)
}

/// Gives every request an id, a log line and metrics; the id is in scope for
/// everything the request runs, so error bodies can carry it. The log line
/// names the agent and execution where the route has them, and the outcome.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let (agent_id, path_execution) = path_ids(&route, req.uri().path());
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let _enter = span.enter();
            drop(_enter);
            tracing::Instrument::instrument(next.run(req), span).await
        })
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let outcome = response.extensions().get::<Outcome>().copied();
    let execution_id = outcome.and_then(|o| o.execution).or(path_execution);
    let outcome = outcome.map_or("ok", |o| o.outcome);
    tracing::info!(request_id = %id, method = %method, route = %route, status, elapsed_us = elapsed.as_micros() as u64, agent_id, execution_id, outcome, "served");
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.to_string(),
            route,
        })
        .observe(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_ids_reads_agent_and_execution() {
        for (template, path, want) in [
            (
                "/api/v1/sdk/agents/{id}/execute",
                "/api/v1/sdk/agents/7/execute",
                (Some(7), None),
            ),
            (
                "/api/v1/sdk/agents/{id}/executions/{eid}",
                "/api/v1/sdk/agents/7/executions/12",
                (Some(7), Some(12)),
            ),
            (
                "/api/v1/sdk/executions/{eid}/verify",
                "/api/v1/sdk/executions/3/verify",
                (None, Some(3)),
            ),
            ("/api/v1/keys/{id}", "/api/v1/keys/4", (None, None)),
            (
                "/api/v1/sdk/agents/{id}",
                "/api/v1/sdk/agents/x",
                (None, None),
            ),
            ("unmatched", "/nope", (None, None)),
        ] {
            assert_eq!(super::path_ids(template, path), want, "{path}");
        }
    }
}
