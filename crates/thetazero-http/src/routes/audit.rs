//! `GET /api/v1/sdk/audit`: the account's audit events with the spec's filters.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use thetazero_api::types::AuditList;
use thetazero_api::ErrorBody;
use thetazero_core::audit::AuditQuery;
use thetazero_core::model::{AgentId, ExecutionId};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{HttpError, HttpResult};
use crate::extract::Query;
use crate::state::AppState;
use crate::views;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Start (inclusive): an RFC 3339 time or a `YYYY-MM-DD` date.
    pub from: Option<String>,
    /// End (inclusive): an RFC 3339 time or a `YYYY-MM-DD` date (the whole day).
    pub to: Option<String>,
    /// Comma-separated action types, e.g. `api_call,permission_denied`.
    #[serde(rename = "actionTypes")]
    pub action_types: Option<String>,
    #[serde(rename = "violationsOnly")]
    pub violations_only: Option<bool>,
    /// At most 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    #[serde(rename = "agentId")]
    pub agent_id: Option<i64>,
    #[serde(rename = "executionId")]
    pub execution_id: Option<i64>,
    /// Only events after this leaf index (the last `leaf_index` of the previous page).
    pub cursor: Option<u64>,
}

/// The filters that the query and the CSV export share, parsed into a query
/// with no cursor and the default limit.
pub(crate) fn filtered_query(
    from: Option<&str>,
    to: Option<&str>,
    action_types: Option<&str>,
    violations_only: Option<bool>,
) -> HttpResult<AuditQuery> {
    Ok(AuditQuery {
        from: from.map(|f| parse_time("from", f, false)).transpose()?,
        to: to.map(|t| parse_time("to", t, true)).transpose()?,
        action_types: action_types
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        violations_only: violations_only.unwrap_or(false),
        ..Default::default()
    })
}

pub(crate) fn parse_time(field: &str, raw: &str, end_of_day: bool) -> HttpResult<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(raw, &format).map_err(|_| {
        HttpError::invalid(format!(
            "query parameter {field:?} must be an RFC 3339 time or a YYYY-MM-DD date"
        ))
    })?;
    let time = if end_of_day {
        Time::from_hms_micro(23, 59, 59, 999_999).unwrap_or(Time::MIDNIGHT)
    } else {
        Time::MIDNIGHT
    };
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Query the audit log.
#[utoipa::path(get, path = "/api/v1/sdk/audit", operation_id = "query_audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<AuditParams>,
) -> HttpResult<Json<AuditList>> {
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(HttpError::invalid(
            "query parameter \"limit\" must be between 1 and 1000",
        ));
    }
    // Leaf indexes are int64s in the document and in the stores.
    if params.cursor.is_some_and(|c| c > i64::MAX as u64) {
        return Err(HttpError::invalid(format!(
            "query parameter \"cursor\" must be a leaf index, at most {}",
            i64::MAX
        )));
    }
    let query = AuditQuery {
        agent_id: params.agent_id.map(AgentId::new),
        execution_id: params.execution_id.map(ExecutionId::new),
        after: params.cursor,
        limit,
        ..filtered_query(
            params.from.as_deref(),
            params.to.as_deref(),
            params.action_types.as_deref(),
            params.violations_only,
        )?
    };
    let page = state.store.query_audit(caller.account(), &query).await?;
    Ok(Json(AuditList {
        success: true,
        events: page.items.iter().map(views::audit).collect(),
        total: page.total,
        anchored: state.ledger.anchored(caller.account()).await?,
    }))
}
