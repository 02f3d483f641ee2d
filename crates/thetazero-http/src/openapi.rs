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
    // A text path parameter (a context key, a framework id) has rules of
    // its own, refused with a 400 naming it.
    if params
        .iter()
        .any(|p| p["in"] == "path" && p["schema"]["type"] == "string")
    {
        out.push(400);
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
            let id = id.strip_suffix(SPEC_SUFFIX).unwrap_or(&id);
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
                        let mut r = error_response(describe(status));
                        if matches!(status, 429 | 503) {
                            r["headers"] = json!({"Retry-After": {
                                "description": "Seconds to wait before retrying, where known",
                                "schema": {"type": "integer", "minimum": 0}
                            }});
                        }
                        responses.insert(key, r);
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

/// Parameter rules the annotations cannot spell: times that are an RFC 3339
/// time or a date, comma-separated framework lists, one framework in a path,
/// the report's formats; the status takes no `format`.
fn refine_parameters(paths: &mut Map<String, Value>) {
    let ids = thetazero_compliance::FRAMEWORKS.join("|");
    let time = json!({"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}],
        "description": "An RFC 3339 time or a YYYY-MM-DD date"});
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else {
                continue;
            };
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            if id == "compliance_status" {
                params.retain(|p| p["name"] != "format");
            }
            // `Last-Event-ID` is the EventSource's own header, described with
            // `after` (its query twin): a declared header would make every
            // other header look unexpected to a client that checks them.
            params.retain(|p| p["name"] != "Last-Event-ID");
            for p in params.iter_mut() {
                let name = p["name"].as_str().unwrap_or_default().to_string();
                match (p["in"].as_str().unwrap_or_default(), name.as_str()) {
                    ("query", "from" | "to" | "since") => p["schema"] = time.clone(),

                    ("query", "frameworks") => {
                        p["schema"] = json!({"type": "string",
                            "pattern": format!("^({ids})(,({ids}))*$")})
                    }
                    ("query", "format") if id == "compliance_report" => {
                        p["schema"] = json!({"type": "string", "enum": ["json", "oscal"]})
                    }
                    ("path", "framework") => {
                        p["schema"] = json!({"type": "string",
                            "enum": thetazero_compliance::FRAMEWORKS})
                    }
                    _ => {}
                }
            }
        }
    }
}

/// An audit stream's 200 is a sequence of Server-Sent Events, each an
/// `event:` name and a JSON `data:` line (and an `id:` for audit events).
fn describe_event_streams(paths: &mut Map<String, Value>) {
    let event = json!({"type": "object", "required": ["event", "data"],
        "properties": {"event": {"type": "string",
            "enum": ["connected", "audit", "checkpoint", "keepalive", "timeout"]},
            "data": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"}}});
    for item in paths.values_mut() {
        for method in METHODS {
            if let Some(content) = item
                .get_mut(method)
                .and_then(|op| op.get_mut("responses"))
                .and_then(|r| r.get_mut("200"))
                .and_then(|r| r.get_mut("content"))
                .and_then(Value::as_object_mut)
            {
                if let Some(sse) = content.get_mut("text/event-stream") {
                    sse["schema"] = event.clone();
                }
            }
        }
    }
}

/// A denial takes a reason only; a grant's lifetime applies to approvals.
fn deny_body(doc: &mut Value) {
    let mut deny = doc["components"]["schemas"]["PermissionDecision"].clone();
    if let Some(props) = deny["properties"].as_object_mut() {
        props.remove("grant_expires_in_ms");
    }
    doc["components"]["schemas"]["DenyDecision"] = deny;
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            if !path.ends_with("/deny") {
                continue;
            }
            if let Some(body) = item
                .get_mut("post")
                .and_then(|op| op.get_mut("requestBody"))
            {
                let text = body.to_string().replace(
                    "#/components/schemas/PermissionDecision",
                    "#/components/schemas/DenyDecision",
                );
                *body = serde_json::from_str(&text).unwrap_or(Value::Null);
            }
        }
    }
    // A patch changes at least one field.
    doc["components"]["schemas"]["PatchAgentRequest"]["minProperties"] = json!(1);
    // A package's period is given as the report's is.
    for field in ["from", "to"] {
        doc["components"]["schemas"]["PackageRequest"]["properties"][field] = json!({
            "type": ["string", "null"], "anyOf": [{"format": "date-time"}, {"format": "date"}]});
    }
    // A patch's fields are values: `null` would change nothing.
    if let Some(props) =
        doc["components"]["schemas"]["PatchAgentRequest"]["properties"].as_object_mut()
    {
        for schema in props.values_mut() {
            if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
                types.retain(|t| t != "null");
            }
            if let Some(one_of) = schema.get_mut("oneOf").and_then(Value::as_array_mut) {
                one_of.retain(|s| s["type"] != "null");
            }
        }
    }
    doc["components"]["schemas"]["PackageRequest"]["properties"]["format"] =
        json!({"type": ["string", "null"], "enum": ["markdown", null]});
    // What a request may ask for, with the default ceilings as maxima (an
    // operator's lower ceilings refuse more, naming the field).
    let ceilings = thetazero_core::Ceilings::default();
    let domains = json!({"type": "array", "maxItems": 256, "items": {"type": "string",
        "pattern": "^(\\*\\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
        "maxLength": 253}});
    // An agent's configuration, as an account outside the operator's
    // `dev_accounts` may set it (DEV, `allow_localhost` and turning content
    // safety off are for those accounts only).
    let config = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "The spec's AgentConfig (snake_case); unknown fields are refused",
        "properties": {
            "memory_limit_mb": {"type": ["integer", "null"], "minimum": 8, "maximum": ceilings.memory_mb},
            "cpu_time_limit_ms": {"type": ["integer", "null"], "minimum": 10, "maximum": ceilings.cpu_time_ms},
            "max_api_calls_per_run": {"type": ["integer", "null"], "minimum": 0, "maximum": ceilings.max_api_calls_per_run},
            "max_api_calls_per_minute": {"type": ["integer", "null"], "minimum": 1, "maximum": ceilings.max_api_calls_per_minute},
            "allow_network": {"type": ["boolean", "null"]},
            "allow_filesystem": {"enum": [false, null], "description": "Reserved: never true"},
            "sandbox_template": {"enum": ["STRICT", "STANDARD", null]},
            "allowed_domains": {"oneOf": [domains.clone(), {"type": "null"}]},
            "content_safety": {"enum": [true, null]},
            "allow_localhost": {"enum": [false, null]},
            "approval_timeout_ms": {"type": ["integer", "null"], "minimum": 1000, "maximum": 600000},
            "approval_calls": {"type": ["array", "null"], "items": {"enum": thetazero_core::limits::APPROVABLE_CALLS}}
        }
    });
    doc["components"]["schemas"]["RegisterAgentRequest"]["properties"]["config"] =
        json!({"oneOf": [config.clone(), {"type": "null"}]});
    doc["components"]["schemas"]["PatchAgentRequest"]["properties"]["config"] = config;
    doc["components"]["schemas"]["CreatePermissionRequest"]["properties"]["permissions"] = json!({
        "type": "object",
        "minProperties": 1,
        "additionalProperties": false,
        "properties": {
            "allow_network": {"type": "boolean"},
            "allow_external_apis": {"type": "boolean"},
            "max_api_calls_per_run": {"type": "integer", "minimum": 0, "maximum": ceilings.max_api_calls_per_run},
            "max_api_calls_per_minute": {"type": "integer", "minimum": 1, "maximum": ceilings.max_api_calls_per_minute},
            "memory_limit_mb": {"type": "integer", "minimum": 8, "maximum": ceilings.memory_mb},
            "cpu_time_limit_ms": {"type": "integer", "minimum": 10, "maximum": ceilings.cpu_time_ms},
            "allowed_domains": domains,
            "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/AgentScopeName"}}
        }
    });
}

/// The compliance report's own JSON Schema as components (its `$defs`
/// become `ComplianceReport_*`), the status view derived from it, and the
/// two routes' answers pointed at them.
fn compliance_schemas(doc: &mut Value) {
    let Ok(mut report) = serde_json::from_str::<Value>(thetazero_compliance::report::JSON_SCHEMA)
    else {
        return;
    };
    let defs = report
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$id");
            o.remove("$defs")
        })
        .unwrap_or_default();
    let relink = |v: &Value| -> Value {
        let text = v
            .to_string()
            .replace("\"#/$defs/", "\"#/components/schemas/ComplianceReport_");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    let schemas = &mut doc["components"]["schemas"];
    for (name, def) in defs.as_object().into_iter().flatten() {
        schemas[format!("ComplianceReport_{name}")] = relink(def);
    }
    let report = relink(&report);
    let props = &report["properties"];
    let control =
        |name: &str| -> Value { props["frameworks"]["items"]["properties"][name].clone() };
    let action = json!({"type": "object",
        "required": ["id", "result", "reasons"], "additionalProperties": false,
        "properties": {"id": {"type": "string"},
            "result": {"enum": ["satisfied", "not_satisfied", "not_assessed"]},
            "reasons": {"type": "array", "items": {"type": "string"}}}});
    let control_view = json!({"type": "object",
    "required": ["id", "coverage", "result", "reasons", "evidence"],
    "additionalProperties": false,
    "properties": {
        "id": {"type": "string"},
        "coverage": defs["control"]["properties"]["coverage"],
        "result": defs["control"]["properties"]["result"],
        "reasons": {"type": "array", "items": {"type": "string"}},
        "evidence": {"type": "array", "items": {"type": "string"}},
        "actions": {"type": "array", "items": action}
    }});
    let framework_view = json!({"type": "object",
    "required": ["id", "catalog_version", "catalog_sha256", "summary", "controls"],
    "additionalProperties": false,
    "properties": {
        "id": control("id"),
        "catalog_version": control("catalog_version"),
        "catalog_sha256": control("catalog_sha256"),
        "summary": control("summary"),
        "controls": {"type": "array", "items": control_view}
    }});
    let scope = json!({"type": "object", "required": ["account", "agent"], "additionalProperties": false,
        "properties": {"account": props["scope"]["properties"]["account"],
                       "agent": props["scope"]["properties"]["agent"]}});
    let status = json!({
        "type": "object",
        "description": "The status view of `thetazero.compliance-report/v1`: per framework and control, coverage and result with their reasons and evidence, and the profile actions the platform evidences.",
        "required": ["success", "schema", "disclaimer", "generated_at", "scope", "checks", "frameworks", "summary"],
        "additionalProperties": false,
        "properties": {
            "success": {"const": true},
            "schema": props["schema"],
            "disclaimer": props["disclaimer"],
            "generated_at": props["generated_at"],
            "scope": scope,
            "checks": props["checks"],
            "summary": props["summary"],
            "frameworks": {"type": "array", "items": framework_view}
        }
    });
    schemas["ComplianceReport"] = report;
    schemas["ComplianceStatus"] = status;
    let answer = |schema: Value| json!({"application/json": {"schema": schema}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(op) = item.get_mut("get") else {
                continue;
            };
            let content = match op["operationId"].as_str() {
                Some("compliance_status") => {
                    answer(json!({"$ref": "#/components/schemas/ComplianceStatus"}))
                }
                Some("compliance_report") => answer(json!({"oneOf": [
                    {"$ref": "#/components/schemas/ComplianceReport"},
                    {"type": "object", "required": ["assessment-results"],
                     "description": "OSCAL assessment-results (format=oscal)"}]})),
                _ => continue,
            };
            op["responses"]["200"]["content"] = content;
        }
    }
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
    refine_parameters(&mut paths);
    describe_event_streams(&mut paths);
    add_spec_paths(&mut paths);
    add_statuses(&mut paths);
    doc["paths"] = Value::Object(paths);
    deny_body(&mut doc);
    compliance_schemas(&mut doc);
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
    fn the_documented_scope_and_preset_names_are_the_ones_the_server_reads() {
        use thetazero_api::types::{AgentScopeName, PresetName};
        use thetazero_core::permissions::{Preset, Scope};
        let names = |v: Value| -> Vec<String> {
            v["enum"]
                .as_array()
                .expect("an enum")
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        };
        let doc = crate::openapi();
        let scopes = names(doc["components"]["schemas"]["AgentScopeName"].clone());
        assert_eq!(scopes.len(), 10);
        assert!(
            scopes.iter().all(|s| Scope::parse(s).is_some()),
            "{scopes:?}"
        );
        let presets = names(doc["components"]["schemas"]["PresetName"].clone());
        assert_eq!(presets.len(), 6);
        assert!(
            presets.iter().all(|p| Preset::parse(p).is_some()),
            "{presets:?}"
        );
        let _ = (AgentScopeName::AgentsRead, PresetName::Full);
        let frameworks = names(doc["components"]["schemas"]["FrameworkId"].clone());
        assert_eq!(frameworks, thetazero_compliance::FRAMEWORKS);
    }

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
        let execute = &doc["paths"]["/api/v1/sdk/agents/{id}/execute"]["post"]["responses"];
        assert!(execute["429"]["headers"]["Retry-After"].is_object());
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
