//! The platform checks: each one a computation over the live system that can
//! fail. A check that cannot run (the store answers an error) is `error`,
//! which makes every control it evidences `not_assessed`, never `satisfied`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use thetazero_core::audit::{AuditAction, AuditQuery, AuditRecord};
use thetazero_core::model::{AccountId, Agent, PageRequest, PermissionRequestStatus};
use thetazero_core::store::Store;
use thetazero_core::{KeyScope, Template};
use thetazero_ledger::Ledger;
use time::OffsetDateTime;

/// Every check: its id and what it establishes.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "config.dev_template",
        "No agent in scope uses the DEV template or allow_localhost",
    ),
    (
        "config.content_safety",
        "Content safety is on for every agent in scope",
    ),
    (
        "config.network_allowlist",
        "Every agent that may use the network has a non-empty allow-list",
    ),
    (
        "config.permissions",
        "No agent in scope holds the FULL preset",
    ),
    (
        "config.limits",
        "Agent limits are within the operator's ceilings and the API's rate limits are on",
    ),
    (
        "keys.scopes",
        "API keys are scoped: no key other than an owner key holds every scope",
    ),
    (
        "audit.denials",
        "Permission refusals are recorded in the audit log",
    ),
    (
        "audit.limit_hits",
        "Limit and rate-limit hits are recorded in the audit log",
    ),
    (
        "audit.content_blocks",
        "Content-safety blocks are recorded in the audit log",
    ),
    (
        "audit.kills",
        "Every kill in the period confirmed termination",
    ),
    (
        "audit.approvals",
        "No permission request was approved by the key that asked for it",
    ),
    (
        "log.verification",
        "The whole audit log verifies against its latest signed checkpoint",
    ),
    (
        "log.retention",
        "Audit events are kept at least 183 days and none was pruned",
    ),
    (
        "log.anchors",
        "Checkpoints are anchored externally and the latest anchoring did not fail",
    ),
    (
        "killswitch.drill",
        "A kill-switch drill confirmed termination in the last 90 days",
    ),
];

/// The six months of Arts. 19(1) and 26(6), as days.
pub const RETENTION_DAYS: i64 = 183;
/// Leaves read per page when checking that none is missing.
const LEAF_PAGE: u64 = 1000;
/// How recent a drill must be.
pub const DRILL_MAX_AGE_DAYS: i64 = 90;

pub fn title(id: &str) -> &'static str {
    CHECKS
        .iter()
        .find(|(c, _)| *c == id)
        .map(|(_, t)| *t)
        .unwrap_or("")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Error,
}

/// One check's outcome and the evidence it computed.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub status: CheckStatus,
    /// Why it failed or could not run (empty when it passed).
    pub reasons: Vec<String>,
    /// The evidence file in a package: `evidence/<id>.json`.
    pub evidence_file: String,
    #[serde(skip)]
    pub evidence: Value,
}

/// The deployment settings that bind an account, as the server runs them.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub platform_version: String,
    pub ceilings: Value,
    pub executions_per_key_per_minute: u32,
    pub code_updates_per_agent_per_hour: u32,
    pub injection_threshold: f32,
    pub toxicity_threshold: f32,
    /// Whether the operator lets this account use the DEV template.
    pub dev_allowed: bool,
    /// `none`, `witness` or `command`.
    pub anchor_kind: String,
    /// Audit leaves are never deleted (the store refuses UPDATE and DELETE).
    pub audit_retention: String,
}

/// What is being assessed: an account, or one agent of it.
#[derive(Debug, Clone)]
pub struct Scope {
    pub account_id: AccountId,
    pub account_name: String,
    pub account_created_at: OffsetDateTime,
    pub agent: Option<Agent>,
}

/// Everything a check reads.
pub struct Context<'a> {
    pub store: Arc<dyn Store>,
    pub ledger: &'a Ledger,
    pub scope: Scope,
    pub agents: Vec<Agent>,
    pub deployment: Deployment,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub now: OffsetDateTime,
}

type Outcome = Result<(Vec<String>, Value), String>;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The agents of an account (every page).
pub async fn all_agents(store: &Arc<dyn Store>, account: AccountId) -> Result<Vec<Agent>, String> {
    let mut out = Vec::new();
    for page in 1.. {
        let p = store
            .list_agents(account, PageRequest { page, limit: 100 })
            .await
            .map_err(|e| e.to_string())?;
        let n = p.items.len();
        out.extend(p.items);
        if n < 100 || out.len() as u64 >= p.total {
            break;
        }
    }
    Ok(out)
}

fn dev_template(cx: &Context<'_>) -> Outcome {
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for a in &cx.agents {
        let dev = a.config.template() == Template::Dev;
        let localhost = a.config.allow_localhost == Some(true);
        if dev {
            reasons.push(format!("agent {} ({}) uses the DEV template", a.name, a.id));
        }
        if localhost {
            reasons.push(format!(
                "agent {} ({}) has allow_localhost on",
                a.name, a.id
            ));
        }
        rows.push(json!({"agent_id": a.id, "agent_name": a.name, "template": a.config.template().name(), "allow_localhost": localhost}));
    }
    Ok((
        reasons,
        json!({"dev_allowed_for_account": cx.deployment.dev_allowed, "agents": rows}),
    ))
}

fn content_safety(cx: &Context<'_>) -> Outcome {
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for a in &cx.agents {
        let on = a.config.content_safety();
        if !on {
            reasons.push(format!(
                "agent {} ({}) has content safety off",
                a.name, a.id
            ));
        }
        rows.push(json!({"agent_id": a.id, "agent_name": a.name, "content_safety": on}));
    }
    Ok((
        reasons,
        json!({
            "injection_threshold": cx.deployment.injection_threshold,
            "toxicity_threshold": cx.deployment.toxicity_threshold,
            "agents": rows,
        }),
    ))
}

fn network_allowlist(cx: &Context<'_>) -> Outcome {
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for a in &cx.agents {
        let network = a.config.allow_network();
        let domains = a.config.allowed_domains();
        if network && domains.is_empty() && a.config.template() == Template::Standard {
            reasons.push(format!(
                "agent {} ({}) has allow_network on with an empty allow-list in STANDARD",
                a.name, a.id
            ));
        }
        rows.push(
            json!({"agent_id": a.id, "agent_name": a.name, "template": a.config.template().name(),
                         "allow_network": network, "allowed_domains": domains}),
        );
    }
    Ok((reasons, json!({"agents": rows})))
}

fn permissions(cx: &Context<'_>) -> Outcome {
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for a in &cx.agents {
        if a.permissions.is_full() {
            reasons.push(format!("agent {} ({}) holds the FULL preset", a.name, a.id));
        }
        rows.push(json!({"agent_id": a.id, "agent_name": a.name, "permissions": a.permissions.to_json(),
                         "granted": a.permissions.granted().iter().map(|s| s.as_str()).collect::<Vec<_>>()}));
    }
    Ok((reasons, json!({"agents": rows})))
}

/// The agents' limits against the operator's ceilings as the server holds
/// them now. An agent configured above a ceiling (the operator lowered it
/// after the agent was registered) runs clipped to it: the check fails with
/// the configured and the effective value, and the evidence holds both.
fn limits(cx: &Context<'_>) -> Outcome {
    let mut reasons = Vec::new();
    let c = &cx.deployment.ceilings;
    let ceiling = |f: &str| c[f].as_u64().unwrap_or(u64::MAX);
    let mut rows = Vec::new();
    for a in &cx.agents {
        let l = a.config.limits();
        let mut effective = serde_json::Map::new();
        let mut clipped = Vec::new();
        for (field, value, cap) in [
            ("memory_limit_mb", l.memory_mb, ceiling("memory_mb")),
            ("cpu_time_limit_ms", l.cpu_time_ms, ceiling("cpu_time_ms")),
            (
                "max_api_calls_per_run",
                l.max_api_calls_per_run,
                ceiling("max_api_calls_per_run"),
            ),
            (
                "max_api_calls_per_minute",
                l.max_api_calls_per_minute,
                ceiling("max_api_calls_per_minute"),
            ),
        ] {
            effective.insert(field.into(), json!(value.min(cap)));
            if value > cap {
                reasons.push(format!(
                    "agent {} ({}) is configured with {field} {value}, above the operator's ceiling {cap}: it runs with {cap}",
                    a.name, a.id
                ));
                clipped.push(
                    json!({"field": field, "configured": value, "ceiling": cap, "effective": cap}),
                );
            }
        }
        rows.push(
            json!({"agent_id": a.id, "agent_name": a.name, "config": a.config.to_json(),
                         "effective_limits": effective, "clipped_to_ceiling": clipped}),
        );
    }
    if cx.deployment.executions_per_key_per_minute == 0 {
        reasons.push("the executions-per-key rate limit is off".into());
    }
    if cx.deployment.code_updates_per_agent_per_hour == 0 {
        reasons.push("the code-change rate limit is off".into());
    }
    Ok((
        reasons,
        json!({
            "ceilings": c,
            "executions_per_key_per_minute": cx.deployment.executions_per_key_per_minute,
            "code_updates_per_agent_per_hour": cx.deployment.code_updates_per_agent_per_hour,
            "agents": rows,
        }),
    ))
}

async fn key_scopes(cx: &Context<'_>) -> Outcome {
    let keys = cx
        .store
        .list_keys(cx.scope.account_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for k in &keys {
        if k.is_revoked() {
            continue;
        }
        let all = KeyScope::ALL.iter().all(|s| k.scopes.contains(s));
        if all && !k.is_owner {
            reasons.push(format!(
                "key {} ({}) holds every scope without being an owner key",
                k.name, k.id
            ));
        }
        rows.push(json!({"key_id": k.id, "name": k.name, "owner": k.is_owner,
                         "scopes": if k.is_owner { vec!["*"] } else { k.scopes.iter().map(|s| s.as_str()).collect() }}));
    }
    Ok((reasons, json!({"active_keys": rows})))
}

/// Every record of these types in the period (and for the agent in scope).
async fn records(
    cx: &Context<'_>,
    types: &[AuditAction],
    cap: usize,
) -> Result<(Vec<AuditRecord>, u64), String> {
    let mut out = Vec::new();
    let mut after = None;
    let mut total = 0;
    loop {
        let page = cx
            .store
            .query_audit(
                cx.scope.account_id,
                &AuditQuery {
                    from: Some(cx.from),
                    to: Some(cx.to),
                    action_types: types.iter().map(|a| a.to_string()).collect(),
                    agent_id: cx.scope.agent.as_ref().map(|a| a.id),
                    after,
                    limit: 500,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        if after.is_none() {
            total = page.total;
        }
        let n = page.items.len();
        after = page.items.last().map(|r| r.leaf_index);
        out.extend(page.items);
        if n < 500 || out.len() >= cap {
            break;
        }
    }
    Ok((out, total))
}

/// The newest `n` events, by what identifies them. Not their descriptions:
/// those name what an agent chose (a key, a URL, an agent's name), and the
/// compliance scope is not the audit scope. The leaf index opens the event
/// for a reader who holds `audit:read`.
fn sample(records: &[AuditRecord], n: usize) -> Vec<Value> {
    records
        .iter()
        .rev()
        .take(n)
        .map(|r| {
            json!({"leaf_index": r.leaf_index, "time": rfc3339(r.timestamp), "action_type": r.event.action_type,
                   "agent_id": r.event.agent_id, "execution_id": r.event.execution_id})
        })
        .collect()
}

/// How many of the newest enforcement events are checked against their
/// leaves in the log.
const CROSS_CHECK: usize = 50;

/// A count of enforcement events. The newest are checked against the log
/// itself: an event row whose leaf is missing, or hashes to another value,
/// or records another action, was changed outside the log, and fails it.
async fn counted(cx: &Context<'_>, types: &[AuditAction]) -> Outcome {
    let (recs, total) = records(cx, types, 5000).await?;
    let mut reasons = Vec::new();
    for r in recs.iter().rev().take(CROSS_CHECK) {
        let leaf = cx
            .store
            .audit_leaves(cx.scope.account_id, r.leaf_index, r.leaf_index + 1, 1)
            .await
            .map_err(|e| e.to_string())?;
        let agrees = leaf.first().is_some_and(|(i, bytes)| {
            *i == r.leaf_index
                && thetazero_audit::merkle::leaf_hash(bytes).0 == r.leaf_hash
                && thetazero_audit::AuditLeaf::from_bytes(bytes).is_ok_and(|l| {
                    l.action_type == r.event.action_type
                        && l.account_id == cx.scope.account_id.get()
                })
        });
        if !agrees {
            reasons.push(format!(
                "{} event {} does not match leaf {} of the log",
                r.event.action_type, r.id, r.leaf_index
            ));
        }
    }
    let mut by_type = serde_json::Map::new();
    for t in types {
        by_type.insert(
            t.to_string(),
            json!(recs.iter().filter(|r| r.event.action_type == *t).count()),
        );
    }
    Ok((
        reasons,
        json!({"total": total, "by_type": by_type, "cross_checked_with_the_log": recs.len().min(CROSS_CHECK),
               "latest": sample(&recs, 20)}),
    ))
}

/// The records with their payloads filled in (queries leave them out).
async fn with_payloads(
    cx: &Context<'_>,
    mut recs: Vec<AuditRecord>,
) -> Result<Vec<AuditRecord>, String> {
    for r in &mut recs {
        r.event.payload = cx
            .store
            .audit_payload(cx.scope.account_id, r.id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(Value::Null);
    }
    Ok(recs)
}

fn is_drill(r: &AuditRecord) -> bool {
    r.event.payload["drill"] == json!(true)
}

async fn kills(cx: &Context<'_>) -> Outcome {
    let (recs, _) = records(cx, &[AuditAction::AgentKilled], 5000).await?;
    let recs = with_payloads(cx, recs).await?;
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    let mut drills = 0;
    for r in &recs {
        if is_drill(r) {
            drills += 1;
            continue;
        }
        let confirmed = r.event.payload["confirmed"] == json!(true);
        if !confirmed {
            reasons.push(format!(
                "the kill at leaf {} ({}) did not confirm termination",
                r.leaf_index,
                rfc3339(r.timestamp)
            ));
        }
        rows.push(json!({"leaf_index": r.leaf_index, "time": rfc3339(r.timestamp), "agent_id": r.event.agent_id,
                         "reason": r.event.payload["reason"], "confirmed": confirmed,
                         "terminated": r.event.payload["terminated"], "elapsed_ms": r.event.payload["elapsed_ms"]}));
    }
    Ok((reasons, json!({"kills": rows, "drills_excluded": drills})))
}

async fn approvals(cx: &Context<'_>) -> Outcome {
    let requests = cx
        .store
        .permission_requests(
            cx.scope.account_id,
            None,
            None,
            cx.scope.agent.as_ref().map(|a| a.id),
            10_000,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut reasons = Vec::new();
    let mut rows = Vec::new();
    for r in requests
        .iter()
        .filter(|r| r.created_at >= cx.from && r.created_at <= cx.to)
    {
        let relation = match (r.requested_by, r.decided_by) {
            (_, None) => "none",
            (Some(a), Some(b)) if a == b => "self",
            (_, Some(_)) => "other_key",
        };
        if r.status == PermissionRequestStatus::Approved && relation == "self" {
            reasons.push(format!(
                "permission request {} was approved by the key that asked for it",
                r.id
            ));
        }
        rows.push(
            json!({"request_id": r.id, "agent_id": r.agent_id, "status": r.status,
                         "requested_by": r.requested_by, "decided_by": r.decided_by,
                         "approver_relation": relation, "created_at": rfc3339(r.created_at),
                         "decided_at": r.decided_at.map(rfc3339), "reason": r.decision_reason}),
        );
    }
    Ok((reasons, json!({"requests": rows})))
}

async fn verification(cx: &Context<'_>) -> Outcome {
    let account = cx.scope.account_id;
    let bundle = cx
        .ledger
        .bundle_bytes(account)
        .await
        .map_err(|e| e.to_string())?;
    let report = thetazero_audit::bundle::verify_bundle(
        std::io::Cursor::new(&bundle),
        cx.ledger.verifier_key(),
    );
    let size = cx
        .store
        .audit_log_size(account)
        .await
        .map_err(|e| e.to_string())?;
    let mut reasons: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("log verification: {f}"))
        .collect();
    let checkpoint = report.largest_verified_checkpoint.as_ref().map(|c| c.size);
    if report.entries == 0 && size > 0 {
        reasons.push(format!(
            "the log holds {size} leaves but no signed checkpoint covers them"
        ));
    }
    Ok((
        reasons,
        json!({
            "origin": cx.ledger.origin(account),
            "verifier_key": cx.ledger.verifier_key().as_str(),
            "log_size": size,
            "entries_verified": report.entries,
            "largest_verified_checkpoint": checkpoint,
            "bundle_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bundle)),
            "checks": report.checks,
            "findings": report.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        }),
    ))
}

async fn retention(cx: &Context<'_>) -> Outcome {
    let account = cx.scope.account_id;
    let size = cx
        .store
        .audit_log_size(account)
        .await
        .map_err(|e| e.to_string())?;
    let age_days = (cx.now - cx.scope.account_created_at).whole_days();
    let mut reasons = Vec::new();
    let first = if size == 0 {
        None
    } else {
        cx.store
            .audit_leaves(account, 0, 1, 1)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
    };
    let first_time = first
        .as_ref()
        .and_then(|(_, bytes)| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|v| v["time"].as_str().map(str::to_string));
    // Events are kept indefinitely, so every index below the log's size must
    // still hold its leaf: one missing anywhere (however young) was pruned.
    let mut missing: Vec<u64> = Vec::new();
    let mut missing_count = 0u64;
    let mut gap = |from: u64, to: u64| {
        missing_count += to - from;
        missing.extend((from..to).take(10usize.saturating_sub(missing.len())));
    };
    let mut next = 0u64;
    while next < size {
        let page = cx
            .store
            .audit_leaves(account, next, size, LEAF_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        for (i, _) in &page {
            if *i > next {
                gap(next, *i);
            }
            next = i + 1;
        }
        if (page.len() as u64) < LEAF_PAGE {
            if next < size {
                gap(next, size);
            }
            break;
        }
    }
    if missing_count > 0 {
        reasons.push(format!(
            "{missing_count} of the log's {size} leaves are missing (indices {}{}): leaves were pruned",
            missing
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if missing_count > missing.len() as u64 { ", ..." } else { "" }
        ));
    }
    let basis = if age_days < RETENTION_DAYS {
        format!("the deployment's account is {age_days} days old, younger than {RETENTION_DAYS} days: satisfied on policy ({})", cx.deployment.audit_retention)
    } else {
        format!(
            "events of the last {RETENTION_DAYS} days are all present ({})",
            cx.deployment.audit_retention
        )
    };
    Ok((
        reasons,
        json!({"policy": cx.deployment.audit_retention, "required_days": RETENTION_DAYS, "account_age_days": age_days,
               "log_size": size, "leaves_missing": missing_count, "first_missing": missing,
               "oldest_event": first_time, "basis": basis}),
    ))
}

async fn anchors(cx: &Context<'_>) -> Outcome {
    let kind = cx.deployment.anchor_kind.clone();
    let mut reasons = Vec::new();
    if kind == "none" {
        reasons.push("no external anchor is configured: checkpoints are signed but not anchored ([anchor] in the config)".into());
        return Ok((reasons, json!({"anchor_kind": kind})));
    }
    let account = cx.scope.account_id;
    let last = cx
        .store
        .last_anchor(account, &kind)
        .await
        .map_err(|e| e.to_string())?;
    let confirmed = cx
        .store
        .last_confirmed_anchor(account, &kind)
        .await
        .map_err(|e| e.to_string())?;
    match &last {
        None => reasons.push(format!(
            "no {kind} anchoring of this account's log has been recorded yet"
        )),
        Some(a) if a.status == "failed" => reasons.push(format!(
            "the latest {kind} anchoring (checkpoint size {}) failed {} time(s)",
            a.checkpoint_size, a.failures
        )),
        _ => {}
    }
    let row = |a: &thetazero_core::audit::AnchorRecord| json!({"checkpoint_size": a.checkpoint_size, "status": a.status, "external_ref": a.external_ref, "updated_at": rfc3339(a.updated_at)});
    Ok((
        reasons,
        json!({"anchor_kind": kind, "latest": last.as_ref().map(row), "latest_confirmed": confirmed.as_ref().map(row)}),
    ))
}

async fn drill(cx: &Context<'_>) -> Outcome {
    let since = cx.now - time::Duration::days(DRILL_MAX_AGE_DAYS);
    let page = cx
        .store
        .query_audit(
            cx.scope.account_id,
            &AuditQuery {
                from: Some(since),
                action_types: vec![AuditAction::ComplianceDrill.to_string()],
                limit: 500,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let drills = with_payloads(cx, page.items).await?;
    let last = drills.iter().rev().find(|r| is_drill(r));
    let mut reasons = Vec::new();
    match last {
        None => reasons.push(format!(
            "no kill-switch drill in the last {DRILL_MAX_AGE_DAYS} days: run `thetazero compliance drill`"
        )),
        Some(r) if r.event.payload["confirmed"] != json!(true) => reasons.push(format!(
            "the last drill (leaf {}) did not confirm termination",
            r.leaf_index
        )),
        _ => {}
    }
    Ok((
        reasons,
        json!({"drills_in_window": drills.len(), "last": last.map(|r| json!({
            "leaf_index": r.leaf_index, "leaf_hash": hex::encode(r.leaf_hash), "time": rfc3339(r.timestamp), "result": r.event.payload}))}),
    ))
}

/// Runs every check.
pub async fn run_all(cx: &Context<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for (id, title) in CHECKS {
        let outcome = match *id {
            "config.dev_template" => dev_template(cx),
            "config.content_safety" => content_safety(cx),
            "config.network_allowlist" => network_allowlist(cx),
            "config.permissions" => permissions(cx),
            "config.limits" => limits(cx),
            "keys.scopes" => key_scopes(cx).await,
            "audit.denials" => counted(cx, &[AuditAction::PermissionDenied]).await,
            "audit.limit_hits" => {
                counted(
                    cx,
                    &[AuditAction::SandboxLimitHit, AuditAction::RateLimitHit],
                )
                .await
            }
            "audit.content_blocks" => counted(cx, &[AuditAction::ContentBlocked]).await,
            "audit.kills" => kills(cx).await,
            "audit.approvals" => approvals(cx).await,
            "log.verification" => verification(cx).await,
            "log.retention" => retention(cx).await,
            "log.anchors" => anchors(cx).await,
            "killswitch.drill" => drill(cx).await,
            other => Err(format!("no implementation of check {other}")),
        };
        let (status, reasons, evidence) = match outcome {
            Ok((reasons, evidence)) if reasons.is_empty() => (CheckStatus::Pass, reasons, evidence),
            Ok((reasons, evidence)) => (CheckStatus::Fail, reasons, evidence),
            Err(e) => (
                CheckStatus::Error,
                vec![format!("the check could not run: {e}")],
                Value::Null,
            ),
        };
        out.push(CheckResult {
            id: id.to_string(),
            title: title.to_string(),
            status,
            reasons,
            evidence_file: format!("evidence/{id}.json"),
            evidence,
        });
    }
    out
}
