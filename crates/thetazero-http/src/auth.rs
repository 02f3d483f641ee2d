//! API keys and the access rule of every route.
//!
//! A key is checked against its stored SHA-256 (the format and generation are
//! `thetazero_runtime::keys`). Every route has exactly one entry in
//! `ROUTES`; a route without one is refused (fail closed), and tests generate
//! the authorization matrix from the same table.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use thetazero_api::ErrorCode;
use thetazero_core::model::{AccountId, ApiKey, KeyId};
use thetazero_core::KeyScope;
use time::OffsetDateTime;

use crate::error::HttpError;
use crate::state::AppState;

pub use thetazero_runtime::keys::{generate_key, hash_key, GeneratedKey, KEY_PREFIX};

/// Who is calling: the key, and the account every query is scoped to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
}

impl Caller {
    pub fn account(&self) -> AccountId {
        self.key.account_id
    }

    pub fn key_id(&self) -> Option<KeyId> {
        Some(self.key.id)
    }
}

/// Who may read an account's audit stream: a key's account or a token's.
#[derive(Debug, Clone, Copy)]
pub struct StreamAccess {
    pub account: AccountId,
    /// The key that opened the stream, or that minted its token: the stream
    /// ends when the key is revoked or loses `audit:read`.
    pub key: KeyId,
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key: health, readiness, the OpenAPI document.
    Public,
    /// A valid key holding this scope.
    Scope(KeyScope),
    /// An owner key of the deployment's first account.
    DeploymentOwner,
    /// A key with `audit:read`, or a short-lived read-only stream token in
    /// the query string (browsers' `EventSource` cannot send headers).
    AuditStream,
}

/// Every route, its method and its access rule. The spec's paths in
/// [`SPEC_PATHS`] take the rule of the route they are another name for.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::Scope(KeyScope::Metrics)),
    ("GET", "/api/v1/openapi.json", Access::Public),
    ("POST", "/api/v1/accounts", Access::DeploymentOwner),
    ("GET", "/api/v1/keys", Access::Scope(KeyScope::Keys)),
    ("POST", "/api/v1/keys", Access::Scope(KeyScope::Keys)),
    ("GET", "/api/v1/keys/{id}", Access::Scope(KeyScope::Keys)),
    ("DELETE", "/api/v1/keys/{id}", Access::Scope(KeyScope::Keys)),
    ("PATCH", "/api/v1/keys/{id}", Access::Scope(KeyScope::Keys)),
    (
        "POST",
        "/api/v1/sdk/agents",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "GET",
        "/api/v1/sdk/agents",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "GET",
        "/api/v1/sdk/agents/{id}",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "PATCH",
        "/api/v1/sdk/agents/{id}",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "DELETE",
        "/api/v1/sdk/agents/{id}",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "GET",
        "/api/v1/sdk/agents/{id}/context/{key}",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "PUT",
        "/api/v1/sdk/agents/{id}/context/{key}",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "DELETE",
        "/api/v1/sdk/agents/{id}/context/{key}",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "POST",
        "/api/v1/sdk/agents/{id}/execute",
        Access::Scope(KeyScope::AgentsExecute),
    ),
    (
        "GET",
        "/api/v1/sdk/agents/{id}/executions",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "GET",
        "/api/v1/sdk/agents/{id}/executions/{eid}",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "GET",
        "/api/v1/sdk/audit",
        Access::Scope(KeyScope::AuditRead),
    ),
    ("GET", "/api/v1/sdk/audit/key", Access::Public),
    (
        "POST",
        "/api/v1/sdk/permission-requests",
        Access::Scope(KeyScope::AgentsWrite),
    ),
    (
        "GET",
        "/api/v1/sdk/permission-requests",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "GET",
        "/api/v1/sdk/permission-requests/{id}",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "POST",
        "/api/v1/sdk/permission-requests/{id}/approve",
        Access::Scope(KeyScope::Approvals),
    ),
    (
        "POST",
        "/api/v1/sdk/permission-requests/{id}/deny",
        Access::Scope(KeyScope::Approvals),
    ),
    ("GET", "/api/v1/sdk/audit/stream", Access::AuditStream),
    (
        "POST",
        "/api/v1/sdk/audit/stream-token",
        Access::Scope(KeyScope::AuditRead),
    ),
    (
        "POST",
        "/api/v1/sdk/agents/{id}/kill",
        Access::Scope(KeyScope::Killswitch),
    ),
    (
        "POST",
        "/api/v1/sdk/kill-switch/global",
        Access::Scope(KeyScope::Killswitch),
    ),
    (
        "GET",
        "/api/v1/sdk/kill-switch/global",
        Access::Scope(KeyScope::Killswitch),
    ),
    (
        "GET",
        "/api/v1/sdk/audit/checkpoint",
        Access::Scope(KeyScope::AuditRead),
    ),
    (
        "GET",
        "/api/v1/sdk/audit/consistency",
        Access::Scope(KeyScope::AuditRead),
    ),
    (
        "GET",
        "/api/v1/sdk/audit/records/{id}/proof",
        Access::Scope(KeyScope::AuditRead),
    ),
    (
        "GET",
        "/api/v1/sdk/audit/export",
        Access::Scope(KeyScope::AuditRead),
    ),
    (
        "GET",
        "/api/v1/sdk/executions/{id}/verify",
        Access::Scope(KeyScope::AgentsRead),
    ),
    (
        "GET",
        "/api/v1/sdk/compliance/frameworks",
        Access::Scope(KeyScope::Compliance),
    ),
    (
        "GET",
        "/api/v1/sdk/compliance/status",
        Access::Scope(KeyScope::Compliance),
    ),
    (
        "GET",
        "/api/v1/sdk/compliance/report",
        Access::Scope(KeyScope::Compliance),
    ),
    (
        "GET",
        "/api/v1/sdk/compliance/component-definition",
        Access::Scope(KeyScope::Compliance),
    ),
    (
        "POST",
        "/api/v1/sdk/compliance/packages/{framework}",
        Access::Scope(KeyScope::Compliance),
    ),
    (
        "POST",
        "/api/v1/sdk/compliance/drill",
        Access::Scope(KeyScope::Compliance),
    ),
];

/// The spec's paths (overview decision 2), each served by the same handlers
/// as the `/api/v1/sdk/...` route it names, with the same access rule.
pub const SPEC_PATHS: &[(&str, &str)] = &[
    ("/api/sdk/agents/{id}/kill", "/api/v1/sdk/agents/{id}/kill"),
    (
        "/api/sdk/kill-switch/global",
        "/api/v1/sdk/kill-switch/global",
    ),
    (
        "/api/sdk/permission-requests",
        "/api/v1/sdk/permission-requests",
    ),
    (
        "/api/sdk/permission-requests/{id}",
        "/api/v1/sdk/permission-requests/{id}",
    ),
    (
        "/api/sdk/permission-requests/{id}/approve",
        "/api/v1/sdk/permission-requests/{id}/approve",
    ),
    (
        "/api/sdk/permission-requests/{id}/deny",
        "/api/v1/sdk/permission-requests/{id}/deny",
    ),
    ("/api/sdk/audit/stream", "/api/v1/sdk/audit/stream"),
];

/// The route a path is served as: a spec path's `/api/v1/sdk/...` route, or
/// the path itself.
pub fn canonical(route: &str) -> &str {
    SPEC_PATHS
        .iter()
        .find(|(spec, _)| *spec == route)
        .map_or(route, |(_, v1)| v1)
}

/// The spec's path for a `/api/v1/sdk/...` route, where it has one.
pub fn spec_path(route: &str) -> Option<&'static str> {
    SPEC_PATHS
        .iter()
        .find(|(_, v1)| *v1 == route)
        .map(|(spec, _)| *spec)
}

/// Every route as it is served: [`ROUTES`] and, for each that has one, its
/// spec path with the same method and rule.
pub fn every_route() -> Vec<(&'static str, &'static str, Access)> {
    let mut all = ROUTES.to_vec();
    for (method, route, access) in ROUTES {
        if let Some(spec) = spec_path(route) {
            all.push((method, spec, *access));
        }
    }
    all
}

pub fn access_for(method: &Method, route: &str) -> Option<Access> {
    let route = canonical(route);
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map(|(_, _, a)| *a)
}

/// How stale `last_used_at` may get before a request refreshes it; refreshing
/// on every request would turn each read into a write.
const TOUCH_INTERVAL: time::Duration = time::Duration::seconds(60);

/// Authenticates the caller and enforces the route's access rule.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match check(&state, &mut req).await {
        Ok(()) => {
            let session = req
                .extensions()
                .get::<crate::session::SessionEnd>()
                .cloned();
            let response = next.run(req).await;
            match session {
                Some(end) => crate::session::close_with_session(response, end),
                None => response,
            }
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn check(state: &AppState, req: &mut Request) -> Result<(), HttpError> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let access = match access_for(req.method(), &route) {
        Some(a) => a,
        None if ROUTES.iter().any(|(_, r, _)| *r == canonical(&route)) => {
            return Err(HttpError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed on {route}", req.method()),
            ))
        }
        None => {
            return Err(HttpError::internal(format!(
                "route {route} has no access rule"
            )))
        }
    };
    if access == Access::Public {
        return Ok(());
    }
    if access == Access::AuditStream
        && !req.headers().contains_key(header::AUTHORIZATION)
        && crate::session::cookie(req.headers()).is_none()
    {
        let token = req
            .uri()
            .query()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| {
                HttpError::new(ErrorCode::Unauthorized, "missing API key or stream token")
            })?;
        let (account, key) = crate::stream_token::verify(&state.stream_secret(), &token)
            .ok_or_else(|| {
                HttpError::new(ErrorCode::Unauthorized, "invalid or expired stream token")
            })?;
        // A token lives only as long as the key that minted it may read.
        if !key_may_stream(state, account, key).await? {
            return Err(HttpError::new(
                ErrorCode::Unauthorized,
                "the key that minted this stream token is revoked or lacks audit:read",
            ));
        }
        req.extensions_mut().insert(StreamAccess { account, key });
        return Ok(());
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned));
    // A dashboard session resolves to its key, the same principal.
    let key = match crate::session::authenticate(state, req).await? {
        Some(key) => key,
        None => authenticate(state, header).await?,
    };
    match access {
        Access::Public => {}
        Access::AuditStream => {
            if !key.has_scope(KeyScope::AuditRead) {
                return Err(HttpError::new(
                    ErrorCode::MissingScope,
                    "this API key lacks the scope audit:read",
                ));
            }
            req.extensions_mut().insert(StreamAccess {
                account: key.account_id,
                key: key.id,
            });
        }
        Access::Scope(scope) => {
            if !key.has_scope(scope) {
                return Err(HttpError::new(
                    ErrorCode::MissingScope,
                    format!("this API key lacks the scope {scope}"),
                ));
            }
        }
        Access::DeploymentOwner => {
            let first = state.store.first_account_id().await?;
            if !(key.is_owner && Some(key.account_id) == first) {
                return Err(HttpError::new(
                    ErrorCode::Forbidden,
                    "only an owner key of the deployment's first account may do this",
                ));
            }
        }
    }
    req.extensions_mut().insert(Caller { key });
    Ok(())
}

/// `header` is the Authorization header: absent, or its text (an error if it
/// was not visible ASCII).
pub(crate) async fn authenticate(
    state: &AppState,
    header: Option<Result<String, header::ToStrError>>,
) -> Result<ApiKey, HttpError> {
    let unauthorized = |m: &str| HttpError::new(ErrorCode::Unauthorized, m);
    let value = header
        .ok_or_else(|| unauthorized("missing API key: send Authorization: Bearer tzk_..."))?
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("Authorization must be: Bearer tzk_..."))?;
    if !secret.starts_with(KEY_PREFIX) || secret.len() > 256 {
        return Err(unauthorized("invalid API key"));
    }
    let hash = hash_key(secret);
    let (key, stored) = state
        .store
        .find_key_by_hash(&hash)
        .await?
        .ok_or_else(|| unauthorized("invalid API key"))?;
    // The lookup matched on the hash already; comparing again in constant time
    // keeps the decision itself free of timing differences.
    if !bool::from(stored.ct_eq(&hash)) {
        return Err(unauthorized("invalid API key"));
    }
    if key.is_revoked() {
        return Err(unauthorized("API key has been revoked"));
    }
    let now = OffsetDateTime::now_utc();
    if key.last_used_at.is_none_or(|t| now - t > TOUCH_INTERVAL) {
        let store = state.store.clone();
        let id = key.id;
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(id, now).await {
                tracing::warn!(key_id = id.get(), error = %e, "could not record key use");
            }
        });
    }
    Ok(key)
}

/// Whether a key is live and may read its account's audit stream.
pub(crate) async fn key_may_stream(
    state: &AppState,
    account: AccountId,
    key: KeyId,
) -> Result<bool, HttpError> {
    Ok(state
        .store
        .get_key(account, key)
        .await?
        .is_some_and(|k| k.revoked_at.is_none() && k.has_scope(KeyScope::AuditRead)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_form() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("tzk_"));
        let body = &a.secret[4..];
        assert_eq!(body.len(), 43, "32 bytes in unpadded base64");
        assert!(body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(a.hash, hash_key(&a.secret));
        assert!(a.secret.starts_with(&a.prefix));
    }

    #[test]
    fn every_route_has_one_rule() {
        let mut seen = std::collections::HashSet::new();
        for (m, r, _) in every_route() {
            assert!(seen.insert((m, r)), "duplicate rule {m} {r}");
        }
    }

    #[test]
    fn spec_paths_name_routes_and_keep_their_rules() {
        for (spec, v1) in SPEC_PATHS {
            assert!(spec.starts_with("/api/sdk/"), "{spec}");
            assert_eq!(spec.replacen("/api/sdk/", "/api/v1/sdk/", 1), *v1);
            assert!(ROUTES.iter().any(|(_, r, _)| r == v1), "{v1} has no rule");
            for method in [Method::GET, Method::POST] {
                assert_eq!(access_for(&method, spec), access_for(&method, v1));
            }
        }
        assert_eq!(canonical("/api/v1/keys"), "/api/v1/keys");
        assert_eq!(
            access_for(&Method::POST, "/api/sdk/agents/{id}/kill"),
            Some(Access::Scope(KeyScope::Killswitch))
        );
        assert_eq!(
            access_for(&Method::DELETE, "/api/sdk/agents/{id}/kill"),
            None
        );
    }
}
