//! Turns check results into per-control results for each catalog, and the
//! JSON report `thetazero.compliance-report/v1`.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::catalog::{Catalog, Requirement};
use crate::checks::{CheckResult, CheckStatus, Deployment, Scope};
use thetazero_core::model::Agent;

pub const SCHEMA: &str = "thetazero.compliance-report/v1";
/// The report's JSON Schema (draft 2020-12), as the repository holds it.
pub const JSON_SCHEMA: &str = include_str!("../schema/compliance-report.v1.schema.json");
pub const DISCLAIMER: &str = "audit-prepared evidence — not a certification or compliance score";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The result of what `ids` names, from the check results: any check that
/// could not run (or did not run at all) makes it `not_assessed`, any that
/// failed `not_satisfied` (with the reasons), otherwise `satisfied`.
fn evaluate(ids: &[String], checks: &[CheckResult]) -> (Value, Vec<String>) {
    let used: Vec<&CheckResult> = ids
        .iter()
        .filter_map(|id| checks.iter().find(|c| &c.id == id))
        .collect();
    let mut reasons = Vec::new();
    let result = if used.len() != ids.len() || used.iter().any(|c| c.status == CheckStatus::Error) {
        for c in used.iter().filter(|c| c.status == CheckStatus::Error) {
            reasons.extend(c.reasons.iter().map(|r| format!("{}: {r}", c.id)));
        }
        if used.len() != ids.len() {
            reasons.push("a check this control names did not run".into());
        }
        json!("not_assessed")
    } else if used.iter().any(|c| c.status == CheckStatus::Fail) {
        for c in used.iter().filter(|c| c.status == CheckStatus::Fail) {
            reasons.extend(c.reasons.iter().map(|r| format!("{}: {r}", c.id)));
        }
        json!("not_satisfied")
    } else {
        json!("satisfied")
    };
    (result, reasons)
}

/// A control's result from the checks that evidence it (see [`evaluate`]).
/// Controls the platform does not cover have no result. Suggested actions
/// of a companion profile (NIST AI 600-1) are listed with the control; an
/// action that names checks gets its own result from them, the others are
/// organizational and have none.
pub fn control(req: &Requirement, checks: &[CheckResult]) -> Value {
    let evidence: Vec<String> = req
        .checks
        .iter()
        .filter_map(|id| checks.iter().find(|c| &c.id == id))
        .map(|c| c.evidence_file.clone())
        .collect();
    let (result, reasons) = if req.coverage.assessed() {
        evaluate(&req.checks, checks)
    } else {
        (Value::Null, Vec::new())
    };
    let mut v = json!({
        "id": req.id,
        "title": req.title,
        "coverage": req.coverage.as_str(),
        "result": result,
        "reasons": reasons,
        "checks": req.checks,
        "evidence": evidence,
    });
    if let Some(s) = &req.customer_supplies {
        v["customer_supplies"] = json!(s);
    }
    if !req.actions.is_empty() {
        let actions: Vec<Value> = req
            .actions
            .iter()
            .map(|a| {
                let (result, reasons) = if a.checks.is_empty() || !req.coverage.assessed() {
                    (Value::Null, Vec::new())
                } else {
                    evaluate(&a.checks, checks)
                };
                let mut v =
                    json!({"id": a.id, "checks": a.checks, "result": result, "reasons": reasons});
                if let Some(n) = &a.note {
                    v["note"] = json!(n);
                }
                v
            })
            .collect();
        v["actions"] = json!(actions);
    }
    v
}

fn summary(controls: &[Value]) -> Value {
    let count = |field: &str, value: &str| controls.iter().filter(|c| c[field] == value).count();
    json!({
        "requirements": controls.len(),
        "coverage": {
            "automated": count("coverage", "automated"),
            "partial": count("coverage", "partial"),
            "organizational": count("coverage", "organizational"),
            "not_applicable": count("coverage", "not_applicable"),
        },
        "result": {
            "satisfied": count("result", "satisfied"),
            "not_satisfied": count("result", "not_satisfied"),
            "not_assessed": count("result", "not_assessed"),
        },
    })
}

/// One framework's section of a report.
pub fn framework(catalog: &Catalog, checks: &[CheckResult]) -> Value {
    let controls: Vec<Value> = catalog
        .requirements
        .iter()
        .map(|r| control(r, checks))
        .collect();
    json!({
        "id": catalog.framework,
        "title": catalog.title,
        "catalog_version": catalog.catalog_version,
        "catalog_sha256": catalog.sha256,
        "edition": catalog.edition,
        "transcription": catalog.transcription,
        "attribution": catalog.attribution,
        "summary": summary(&controls),
        "controls": controls,
    })
}

/// The bytes of an evidence file: the check's data with its scope.
pub fn evidence_bytes(check: &CheckResult, scope: &Value) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(&json!({
        "check": check.id,
        "title": check.title,
        "status": check.status,
        "reasons": check.reasons,
        "scope": scope,
        "data": check.evidence,
    }))
    .unwrap_or_default();
    v.push(b'\n');
    v
}

pub struct Inputs<'a> {
    pub scope: &'a Scope,
    pub agents: &'a [Agent],
    /// Frameworks each agent was registered with, by agent id.
    pub agent_frameworks: &'a [(thetazero_core::model::AgentId, Vec<String>)],
    pub deployment: &'a Deployment,
    pub catalogs: &'a [Catalog],
    pub checks: &'a [CheckResult],
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub now: OffsetDateTime,
}

pub fn scope_json(i: &Inputs<'_>) -> Value {
    json!({
        "account": {"id": i.scope.account_id, "name": i.scope.account_name},
        "agent": i.scope.agent.as_ref().map(|a| json!({"id": a.id, "name": a.name})),
        "agents": i.agents.iter().map(|a| {
            let frameworks = i.agent_frameworks.iter().find(|(id, _)| *id == a.id).map(|(_, f)| f.clone()).unwrap_or_default();
            json!({"id": a.id, "name": a.name, "version": a.version, "status": a.status.as_str(),
                   "code_sha256": thetazero_runtime::sha256_hex(a.entry_code.as_bytes()),
                   "template": a.config.template().name(), "frameworks": frameworks})
        }).collect::<Vec<_>>(),
        "deployment": i.deployment,
    })
}

/// The whole JSON report.
pub fn report(i: &Inputs<'_>) -> Value {
    let scope = scope_json(i);
    let frameworks: Vec<Value> = i.catalogs.iter().map(|c| framework(c, i.checks)).collect();
    let mut not_covered = Vec::new();
    for (catalog, f) in i.catalogs.iter().zip(&frameworks) {
        for c in f["controls"].as_array().into_iter().flatten() {
            if c["coverage"] != "automated" {
                not_covered.push(json!({
                    "framework": catalog.framework,
                    "id": c["id"],
                    "title": c["title"],
                    "coverage": c["coverage"],
                    "customer_supplies": c.get("customer_supplies").cloned().unwrap_or(Value::Null),
                }));
            }
        }
    }
    let evidence: Vec<Value> = i
        .checks
        .iter()
        .map(|c| {
            let bytes = evidence_bytes(c, &scope);
            json!({"file": c.evidence_file, "check": c.id, "sha256": hex::encode(Sha256::digest(&bytes))})
        })
        .collect();
    let mut totals = Map::new();
    for key in ["satisfied", "not_satisfied", "not_assessed"] {
        let n: u64 = frameworks
            .iter()
            .map(|f| f["summary"]["result"][key].as_u64().unwrap_or(0))
            .sum();
        totals.insert(key.into(), json!(n));
    }
    let mut coverage = Map::new();
    for key in ["automated", "partial", "organizational", "not_applicable"] {
        let n: u64 = frameworks
            .iter()
            .map(|f| f["summary"]["coverage"][key].as_u64().unwrap_or(0))
            .sum();
        coverage.insert(key.into(), json!(n));
    }
    json!({
        "schema": SCHEMA,
        "disclaimer": DISCLAIMER,
        "generated_at": rfc3339(i.now),
        "platform": {"name": "thetazero", "version": i.deployment.platform_version},
        "scope": scope,
        "period": {"from": rfc3339(i.from), "to": rfc3339(i.to)},
        "catalogs": i.catalogs.iter().map(|c| json!({"framework": c.framework, "version": c.catalog_version, "sha256": c.sha256, "edition": c.edition})).collect::<Vec<_>>(),
        "checks": i.checks.iter().map(|c| json!({"id": c.id, "title": c.title, "status": c.status, "reasons": c.reasons, "evidence_file": c.evidence_file})).collect::<Vec<_>>(),
        "frameworks": frameworks,
        "not_covered": not_covered,
        "evidence": evidence,
        "summary": {"result": totals, "coverage": coverage},
    })
}

/// The short form `GET status` answers: per framework and control, coverage,
/// result and reasons.
pub fn status(report: &Value) -> Value {
    let frameworks: Vec<Value> = report["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            json!({
                "id": f["id"],
                "catalog_version": f["catalog_version"],
                "catalog_sha256": f["catalog_sha256"],
                "summary": f["summary"],
                "controls": f["controls"].as_array().into_iter().flatten().map(|c| {
                    let mut v = json!({
                        "id": c["id"], "coverage": c["coverage"], "result": c["result"], "reasons": c["reasons"], "evidence": c["evidence"],
                    });
                    // Only the profile actions the platform evidences: the
                    // organizational ones are in the report.
                    let evidenced: Vec<Value> = c["actions"].as_array().into_iter().flatten()
                        .filter(|a| !a["result"].is_null())
                        .map(|a| json!({"id": a["id"], "result": a["result"], "reasons": a["reasons"]}))
                        .collect();
                    if !evidenced.is_empty() {
                        v["actions"] = json!(evidenced);
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "disclaimer": report["disclaimer"],
        "generated_at": report["generated_at"],
        "scope": {"account": report["scope"]["account"], "agent": report["scope"]["agent"]},
        "checks": report["checks"],
        "frameworks": frameworks,
        "summary": report["summary"],
    })
}
