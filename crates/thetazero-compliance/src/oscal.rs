//! OSCAL outputs: `assessment-results` for one evaluation (an observation
//! per check, a finding per control the platform covers, and a minimal
//! assessment plan imported through `import-ap`), and a
//! `component-definition` of this release (the controls each framework's
//! implementation covers). Both state their `oscal-version`.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::report::DISCLAIMER;

/// The OSCAL version these documents follow.
pub const OSCAL_VERSION: &str = "1.2.1";
/// Namespace of the properties thetazero adds.
pub const NS: &str = "https://thetazero.dev/ns/oscal";
/// The property naming a NIST AI 600-1 suggested action a check evidences.
pub const ACTION_PROP: &str = "nist-ai-600-1-action";

/// A name-based UUID (version 5 layout, SHA-256 based): the same input
/// makes the same UUID.
pub fn uuid(name: &str) -> String {
    let d = Sha256::digest(format!("thetazero oscal\0{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A control id as an OSCAL token, prefixed by its framework
/// (`eu_ai_act-art.12_1`, `nist_ai_rmf-govern_1.1`).
pub fn control_token(framework: &str, id: &str) -> String {
    let mut slug = String::new();
    for c in id.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('_') && !slug.is_empty() {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_').replace("._", ".");
    format!("{framework}-{slug}")
}

fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "ns": NS, "value": value})
}

fn metadata(title: &str, at: &str, version: &str) -> Value {
    json!({
        "title": title,
        "last-modified": at,
        "version": version,
        "oscal-version": OSCAL_VERSION,
        "remarks": DISCLAIMER,
    })
}

/// Assessment results for one report.
pub fn assessment_results(report: &Value) -> Value {
    let at = report["generated_at"]
        .as_str()
        .unwrap_or("1970-01-01T00:00:00Z");
    let version = report["platform"]["version"].as_str().unwrap_or("0");
    let account = &report["scope"]["account"];
    let scope_name = match report["scope"]["agent"].as_object() {
        Some(a) => format!(
            "agent {} ({}) of account {}",
            a["name"].as_str().unwrap_or(""),
            a["id"],
            account["id"]
        ),
        None => format!(
            "account {} ({})",
            account["name"].as_str().unwrap_or(""),
            account["id"]
        ),
    };
    let run = format!(
        "{}|{}|{}",
        account["id"], report["scope"]["agent"]["id"], at
    );
    let ap_uuid = uuid(&format!("ap|{run}"));
    let ap_resource = uuid(&format!("ap-resource|{run}"));
    let ssp_resource = uuid(&format!("ssp-resource|{run}"));
    let assessment_plan = json!({"assessment-plan": {
        "uuid": ap_uuid,
        "metadata": metadata("thetazero automated checks (assessment plan)", at, version),
        "import-ssp": {"href": format!("#{ssp_resource}")},
        "reviewed-controls": {
            "description": "The controls of the frameworks assessed, evidenced by the platform's checks.",
            "control-selections": [{"include-all": {}}],
        },
        "back-matter": {"resources": [{
            "uuid": ssp_resource,
            "title": "System security plan",
            "description": "The customer's system security plan; the platform does not hold it.",
        }]},
    }});
    let ap_bytes = serde_json::to_vec(&assessment_plan).unwrap_or_default();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ap_bytes);

    let mut observations = Vec::new();
    let mut observation_of = std::collections::HashMap::new();
    for c in report["checks"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or("");
        let u = uuid(&format!("observation|{run}|{id}"));
        observation_of.insert(id.to_string(), u.clone());
        let reasons: Vec<&str> = c["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut description = format!(
            "{}: {}.",
            c["title"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or("")
        );
        if !reasons.is_empty() {
            description.push(' ');
            description.push_str(&reasons.join("; "));
        }
        observations.push(json!({
            "uuid": u,
            "title": id,
            "description": description,
            "props": [prop("check-id", id), prop("check-status", c["status"].as_str().unwrap_or(""))],
            "methods": ["TEST"],
            "types": ["finding"],
            "collected": at,
            "relevant-evidence": [{"href": c["evidence_file"], "description": "The data the check computed on the live system."}],
        }));
    }
    let mut findings = Vec::new();
    for f in report["frameworks"].as_array().into_iter().flatten() {
        let fid = f["id"].as_str().unwrap_or("");
        for c in f["controls"].as_array().into_iter().flatten() {
            let Some(result) = c["result"].as_str() else {
                continue;
            };
            let cid = c["id"].as_str().unwrap_or("");
            let related: Vec<Value> = c["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| observation_of.get(k.as_str().unwrap_or("")))
                .map(|u| json!({"observation-uuid": u}))
                .collect();
            let reasons: Vec<&str> = c["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let state = if result == "satisfied" {
                "satisfied"
            } else {
                "not-satisfied"
            };
            let mut status = json!({"state": state});
            if result == "not_assessed" {
                status["reason"] = json!("other");
                status["remarks"] =
                    json!("not assessed: a check this control rests on could not run");
            }
            let mut props = vec![
                prop("framework", fid),
                prop("control", cid),
                prop("coverage", c["coverage"].as_str().unwrap_or("")),
                prop("result", result),
            ];
            // The profile actions the checks evidence, each with its result
            // as the property's class.
            for a in c["actions"].as_array().into_iter().flatten() {
                if let (Some(id), Some(r)) = (a["id"].as_str(), a["result"].as_str()) {
                    let mut p = prop(ACTION_PROP, id);
                    p["class"] = json!(r);
                    props.push(p);
                }
            }
            let mut finding = json!({
                "uuid": uuid(&format!("finding|{run}|{fid}|{cid}")),
                "title": format!("{fid} {cid}"),
                "description": if reasons.is_empty() { format!("{} ({}): {}", c["title"].as_str().unwrap_or(""), c["coverage"].as_str().unwrap_or(""), result) } else { reasons.join("; ") },
                "props": props,
                "target": {
                    "type": "statement-id",
                    "target-id": control_token(fid, cid),
                    "status": status,
                },
            });
            if !related.is_empty() {
                finding["related-observations"] = json!(related);
            }
            findings.push(finding);
        }
    }
    json!({"assessment-results": {
        "uuid": uuid(&format!("ar|{run}")),
        "metadata": metadata(&format!("thetazero compliance assessment results: {scope_name}"), at, version),
        "import-ap": {"href": format!("#{ap_resource}")},
        "results": [{
            "uuid": uuid(&format!("result|{run}")),
            "title": format!("Automated checks of {scope_name}"),
            "description": format!("{DISCLAIMER}. Catalogs: {}.", report["catalogs"].as_array().into_iter().flatten()
                .map(|c| format!("{} {} sha256 {}", c["framework"].as_str().unwrap_or(""), c["version"].as_str().unwrap_or(""), c["sha256"].as_str().unwrap_or("")))
                .collect::<Vec<_>>().join(", ")),
            "start": report["period"]["from"],
            "end": report["period"]["to"],
            "reviewed-controls": {"control-selections": [{"include-all": {}}]},
            "observations": observations,
            "findings": findings,
        }],
        "back-matter": {"resources": [{
            "uuid": ap_resource,
            "title": "Assessment plan",
            "description": "The minimal assessment plan of these automated checks.",
            "base64": {"filename": "assessment-plan.json", "media-type": "application/json", "value": b64},
        }]},
    }})
}

/// The component definition of this release: for each framework, the
/// controls the platform's checks evidence and how.
pub fn component_definition(catalogs: &[Catalog], version: &str, at: &str) -> Value {
    let implementations: Vec<Value> = catalogs
        .iter()
        .map(|c| {
            let reqs: Vec<Value> = c
                .requirements
                .iter()
                .filter(|r| r.coverage.assessed())
                .map(|r| {
                    let mut props = vec![prop("control", &r.id), prop("coverage", r.coverage.as_str())];
                    let mut description = format!("{}: evidenced by {}", r.title, r.checks.iter().map(|k| format!("{k} ({})", crate::checks::title(k))).collect::<Vec<_>>().join(", "));
                    let evidenced: Vec<&crate::catalog::Action> = r.actions.iter().filter(|a| !a.checks.is_empty()).collect();
                    for a in &evidenced {
                        props.push(prop(ACTION_PROP, &a.id));
                    }
                    if !evidenced.is_empty() {
                        description.push_str(&format!(
                            ". NIST AI 600-1 actions evidenced in part: {}",
                            evidenced.iter().map(|a| format!("{} ({})", a.id, a.checks.join(", "))).collect::<Vec<_>>().join("; ")
                        ));
                    }
                    json!({
                        "uuid": uuid(&format!("req|{version}|{}|{}", c.framework, r.id)),
                        "control-id": control_token(&c.framework, &r.id),
                        "description": description,
                        "props": props,
                    })
                })
                .collect();
            json!({
                "uuid": uuid(&format!("impl|{version}|{}", c.framework)),
                "source": format!("https://thetazero.dev/catalogs/{}.json#sha256={}", c.framework, c.sha256),
                "description": format!("{} — catalog {} ({})", c.title, c.catalog_version, c.edition),
                "props": [prop("catalog-sha256", &c.sha256)],
                "implemented-requirements": reqs,
            })
        })
        .collect();
    json!({"component-definition": {
        "uuid": uuid(&format!("component-definition|{version}")),
        "metadata": metadata(&format!("thetazero {version} component definition"), at, version),
        "components": [{
            "uuid": uuid(&format!("component|{version}")),
            "type": "software",
            "title": "thetazero",
            "description": "A self-hostable, governed runtime for AI agents: deny-by-default permissions, sandbox limits, content safety, kill switch, human approval, and a verifiable audit log.",
            "control-implementations": implementations,
        }],
    }})
}
