//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use axum::Json;
use thetazero_api::types::Health;
use thetazero_api::ErrorCode;

use crate::auth::Caller;
use crate::error::HttpError;
use crate::state::AppState;

/// Liveness: the process is serving.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = thetazero_api::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, HttpError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        HttpError::new(ErrorCode::ServiceUnavailable, "database is not reachable")
    })?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics in the text exposition format, on the main listener
/// for a key of the deployment's first account holding `metrics` (the
/// separate `metrics_listen` address needs no key). Deployment-wide figures:
/// other accounts' keys are refused.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "OpenMetrics text (`application/openmetrics-text; version=1.0.0; charset=utf-8`)",
        content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, HttpError> {
    let first = state.store.first_account_id().await?;
    if Some(caller.account()) != first {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "metrics cover the whole deployment: only keys of its first account may read them",
        ));
    }
    Ok(exposition(&state).await)
}

/// The metrics answer: the one the operator's listener serves without a key.
pub async fn exposition(state: &AppState) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(state).await,
    )
}
