//! Completes the OpenAPI document the handlers' annotations produce: the
//! spec's paths with their own operation ids, the routes served outside the
//! annotated router (the document itself, the dashboard's session), and the
//! error statuses every route shares because its extractors and the access
//! check can answer them. Must not describe anything the server does not do.

use serde_json::{json, Map, Value};

use crate::auth::{self, Access};

/// Operation ids of the spec's paths: the `/api/v1/sdk/...` operation's id
/// with this suffix.
pub const SPEC_SUFFIX: &str = "_spec_path";

/// Statuses a handler answers beyond those its extractors and the access
/// check give every route, with the reason in a comment. Kept next to the
/// document rather than in each annotation so the shared ones are stated once.
const EXTRA: &[(&str, &[u16])] = &[
    // A config the template forbids (400); a killed agent cannot be
    // replaced (409); code updates past the evolution rate (429).
    ("register_agent", &[409, 429]),
    ("patch_agent", &[409, 429]),
    // A killed or disabled agent (409), the per-key and per-account
    // execution rates and a busy account (429), a halt or a full engine (503).
    ("execute_agent", &[409, 429]),
    // A stored value that content safety blocks (422); quota (403).
    ("put_context", &[409, 422]),
    // The agent asked for may not exist; a quota of pending requests (403).
    ("create_permission_request", &[404]),
    // Already decided (409).
    ("approve_permission_request", &[409]),
    ("deny_permission_request", &[409]),
    // The last key that may manage keys (409 `last_key_manager`).
    ("revoke_key", &[409]),
    ("set_key_scopes", &[409]),
    // An execution that has not finished has no receipt (400).
    ("verify_execution", &[400]),
    // The drill runs an execution: the same answers as one.
    ("compliance_drill", &[409, 429]),
    ("compliance_package", &[429]),
    // `agentId` names an agent the account may not have.
    ("compliance_status", &[404]),
    ("compliance_report", &[404]),
    // Sizes past the log's (400).
    ("audit_record_proof", &[400]),
    // The session routes authenticate by themselves: a key or the cookie
    // (401), the origin and CSRF checks (403), the store behind both (503).
    ("sign_in", &[401, 403, 503]),
    ("current_session", &[401, 503]),
    ("sign_out", &[401, 403, 503]),
];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "Invalid request: `invalid_json`, `invalid_request` naming the field or parameter, `invalid_config`, `limit_above_ceiling`",
        401 => "No valid API key (`unauthorized`)",
        403 => "The key lacks the route's scope (`missing_scope`), or the action is not the key's to take (`forbidden`, `quota_exceeded`)",
        404 => "No such resource in the caller's account (`not_found`)",
        409 => "The resource's state forbids it (`conflict`, `agent_killed`, `agent_disabled`, `last_key_manager`)",
        413 => "The body is larger than the server accepts (`payload_too_large`)",
        415 => "The body's Content-Type is not JSON (`unsupported_media_type`)",
        422 => "Content safety blocked the value (`content_blocked`)",
        429 => "A rate limit was hit (`rate_limited`); see Retry-After",
        500 => "Internal error (`internal_error`); the server log has the request id",
        503 => "Storage unavailable, or executions halted (`service_unavailable`, `global_halt`); see Retry-After",
        _ => "Error",
    }
}

/// The statuses an operation answers whatever its handler does.
fn shared_statuses(path: &str, method: &str, op: &Value) -> Vec<u16> {
    let access = axum::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .ok()
        .and_then(|m| auth::access_for(&m, path));
    let mut out = vec![500];
    match access {
        Some(Access::Public) | None => {}
        // Authentication reads the store, so it can find it unavailable.
        Some(_) => out.extend([401, 403, 503]),
    }
    if op.get("requestBody").is_some() {
        out.extend([400, 413, 415]);
    }
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    if params.iter().any(|p| p["in"] == "path") {
        out.push(404);
    }
    if params
        .iter()
        .any(|p| p["in"] == "query" || p["in"] == "header")
    {
        out.push(400);
    }
    out
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn add_statuses(paths: &mut Map<String, Value>) {
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else {
                continue;
            };
            let mut statuses = shared_statuses(path, method, op);
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            if let Some((_, extra)) = EXTRA.iter().find(|(name, _)| *name == id) {
                statuses.extend(extra.iter());
            }
            let responses = op["responses"]
                .as_object_mut()
                .expect("every operation has responses");
            for status in statuses {
                let key = status.to_string();
                match responses.get_mut(&key) {
                    // An annotation that named the status without a body
                    // gets the error body.
                    Some(r) if r.get("content").is_none() && status >= 400 => {
                        r["content"] = error_response("")["content"].clone();
                    }
                    Some(_) => {}
                    None => {
                        responses.insert(key, error_response(describe(status)));
                    }
                }
            }
            sort_responses(responses);
        }
    }
}

fn sort_responses(responses: &mut Map<String, Value>) {
    let mut all: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(all);
}

/// The spec's paths: a copy of the `/api/v1/sdk/...` item, each operation
/// with its own id.
fn add_spec_paths(paths: &mut Map<String, Value>) {
    for (spec, v1) in auth::SPEC_PATHS {
        let Some(mut item) = paths.get(*v1).cloned() else {
            continue;
        };
        for method in METHODS {
            if let Some(op) = item.get_mut(method) {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                op["operationId"] = Value::String(format!("{id}{SPEC_SUFFIX}"));
                op["description"] = Value::String(format!(
                    "The spec's path for `{}` (served by the same handler).",
                    v1
                ));
            }
        }
        paths.insert((*spec).to_string(), item);
    }
}

fn session_item() -> Value {
    let session = json!({"$ref": "#/components/schemas/SessionView"});
    let op = |id: &str, summary: &str, status: &str, body: Value| {
        json!({
            "tags": ["dashboard"],
            "summary": summary,
            "operationId": id,
            "responses": {
                status: {"description": summary, "content": {"application/json": {"schema": body}}},
            }
        })
    };
    let mut post = op(
        "sign_in",
        "Sign in: exchange `{api_key}` for a session cookie (HttpOnly, SameSite=Strict)",
        "201",
        session.clone(),
    );
    post["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignInRequest"}}}
    });
    json!({
        "post": post,
        "get": op("current_session", "Who is signed in, with the CSRF token for X-CSRF-Token", "200", session),
        "delete": op("sign_out", "Sign out (needs X-CSRF-Token); the cookie is cleared", "200",
            json!({"$ref": "#/components/schemas/SuccessResponse"})),
    })
}

/// The document as served: `doc` (the annotated routes) completed.
pub fn complete(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    let mut paths = doc["paths"].as_object().cloned().unwrap_or_default();
    paths.insert(
        "/api/v1/openapi.json".into(),
        json!({"get": {
            "tags": ["operations"],
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {
                "description": "The OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}}
            }}
        }}),
    );
    paths.insert("/api/v1/session".into(), session_item());
    add_spec_paths(&mut paths);
    add_statuses(&mut paths);
    doc["paths"] = Value::Object(paths);
    doc["components"]["securitySchemes"]["stream_token"] = json!({
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A read-only token from POST /api/v1/sdk/audit/stream-token (the audit stream only)"
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_present() {
        let doc = crate::openapi();
        let mut seen = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let id = op["operationId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                    assert!(seen.insert(id.to_string()), "{id} is used twice");
                }
            }
        }
        assert!(seen.contains("kill_agent"));
        assert!(seen.contains(&format!("kill_agent{SPEC_SUFFIX}")));
    }

    #[test]
    fn shared_statuses_follow_access_and_extractors() {
        let body = json!({"requestBody": {}, "parameters": [{"in": "path"}]});
        assert_eq!(
            shared_statuses("/api/v1/sdk/agents/{id}/kill", "post", &body),
            vec![500, 401, 403, 503, 400, 413, 415, 404]
        );
        assert_eq!(shared_statuses("/healthz", "get", &json!({})), vec![500]);
        assert_eq!(
            shared_statuses(
                "/api/sdk/audit/stream",
                "get",
                &json!({"parameters": [{"in": "query"}]})
            ),
            vec![500, 401, 403, 503, 400]
        );
    }

    #[test]
    fn every_operation_declares_errors_with_the_error_body() {
        let doc = crate::openapi();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                for (status, r) in op["responses"].as_object().unwrap() {
                    let code: u16 = status.parse().unwrap();
                    if code >= 400 {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
