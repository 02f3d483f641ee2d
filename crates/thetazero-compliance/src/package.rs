//! The evidence package: a zip holding a README, a summary table, one page
//! per control, the not-covered list, the evidence files, the JSON report, a
//! coverage chart and a manifest of SHA-256 digests, signed with the
//! deployment's key as a DSSE envelope around an in-toto statement.
//! [`verify`] checks a package offline.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::report::{evidence_bytes, DISCLAIMER};
use crate::Assessment;

pub const MEDIA_TYPE: &str = "application/zip";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://thetazero.dev/compliance-package/v1";
/// The signed manifest inside a package.
pub const ENVELOPE: &str = "manifest.dsse.json";
pub const SUMMARY: &str = "summary.md";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{0}")]
    Zip(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs bytes with the deployment's key.
pub type Signer<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// A built package.
pub struct Package {
    pub filename: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// `summary.md`, the document the SDKs hand back as `markdown`.
    pub markdown: String,
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// A horizontal bar per result and coverage class, as SVG.
pub fn coverage_svg(framework: &Value) -> String {
    let s = &framework["summary"];
    let n = |a: &str, b: &str| s[a][b].as_u64().unwrap_or(0);
    let rows = [
        ("satisfied", n("result", "satisfied"), "#2e7d32"),
        ("not satisfied", n("result", "not_satisfied"), "#c62828"),
        ("not assessed", n("result", "not_assessed"), "#f9a825"),
        ("organizational", n("coverage", "organizational"), "#607d8b"),
        ("not applicable", n("coverage", "not_applicable"), "#bdbdbd"),
    ];
    let total = s["requirements"].as_u64().unwrap_or(0).max(1);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"560\" height=\"{}\" font-family=\"sans-serif\" font-size=\"13\">\n<title>{} — coverage and results ({} requirements)</title>\n<text x=\"10\" y=\"20\" font-weight=\"bold\">{} ({} requirements)</text>\n",
        40 + rows.len() * 28,
        xml(framework["title"].as_str().unwrap_or("")),
        total,
        xml(framework["title"].as_str().unwrap_or("")),
        total
    );
    for (i, (label, count, color)) in rows.iter().enumerate() {
        let y = 34 + i * 28;
        let w = (*count as f64 / total as f64 * 360.0).round() as u64;
        out.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{label}</text><rect x=\"130\" y=\"{}\" width=\"{w}\" height=\"18\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{count}</text>\n",
            y + 14,
            y,
            136 + w,
            y + 14
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn readme(a: &Assessment, framework: &Value) -> String {
    let scope = &a.scope;
    let agent = match scope["agent"].as_object() {
        Some(ag) => format!(
            "agent {} (id {})",
            ag["name"].as_str().unwrap_or(""),
            ag["id"]
        ),
        None => "every agent of the account".to_string(),
    };
    format!(
        "# Compliance evidence package: {title}\n\n\
**{DISCLAIMER}.** This package maps what the platform observed to the controls of one framework \
for a compliance team to review. It does not certify anything, and no figure in it is a score.\n\n\
## Scope\n\n\
- Account: {account} (id {account_id})\n- Covers: {agent}\n- Framework: `{fid}`, catalog version {version}, SHA-256 `{sha}`\n\
- Edition: {edition}\n- Transcription: {transcription}\n- Period: {from} to {to}\n- Generated: {generated} by thetazero {platform}\n\n\
## Contents\n\n\
- `summary.md`: the table of every control with its coverage and result\n\
- `controls/`: one page per control: what evidences it, the result, the reasons\n\
- `not-covered.md`: what the platform does not cover and the customer must supply\n\
- `evidence/`: the data each check computed on the live system (JSON)\n\
- `report.json`: the full report (`thetazero.compliance-report/v1`)\n\
- `oscal/assessment-results.json`: the same evaluation as OSCAL assessment results\n\
- `charts/{fid}.svg`: coverage and results\n\
- `manifest.json`: the SHA-256 of every file\n\
- `manifest.dsse.json`: a DSSE envelope (in-toto statement listing every file and its digest) signed with the deployment's Ed25519 key\n\
- `verifier-key.txt`: the deployment's verifier key, as `GET /api/v1/sdk/audit/key` answers it\n\n\
`coverage` (automated, partial, organizational, not applicable) and `result` (satisfied, not satisfied, \
not assessed) are separate: a control the platform does not cover has no result, and a check that could \
not run leaves its controls not assessed.\n\n\
## Verify offline\n\n\
```sh\n\
thetazero audit key --url https://YOUR-SERVER > vkey   # or take it from the operator, out of band\n\
thetazero compliance verify {file} --key vkey\n\
```\n\n\
The verifier checks the envelope's Ed25519 signature over DSSE's pre-authentication encoding, then that \
every file in the archive is listed in the signed statement with the same SHA-256 and that none is missing \
or added. Without `--key` it uses `verifier-key.txt` from the package, which proves integrity but not \
origin: pin the key you got from the operator. Generating this package was recorded in the account's audit \
log (`compliance_package_generated`), so its digest can be proven there too.\n",
        title = framework["title"].as_str().unwrap_or(""),
        account = scope["account"]["name"].as_str().unwrap_or(""),
        account_id = scope["account"]["id"],
        fid = framework["id"].as_str().unwrap_or(""),
        version = framework["catalog_version"].as_str().unwrap_or(""),
        sha = framework["catalog_sha256"].as_str().unwrap_or(""),
        edition = framework["edition"].as_str().unwrap_or(""),
        transcription = framework["transcription"].as_str().unwrap_or(""),
        from = a.report["period"]["from"].as_str().unwrap_or(""),
        to = a.report["period"]["to"].as_str().unwrap_or(""),
        generated = a.report["generated_at"].as_str().unwrap_or(""),
        platform = a.report["platform"]["version"].as_str().unwrap_or(""),
        file = "PACKAGE.zip",
    )
}

fn result_label(c: &Value) -> String {
    c["result"].as_str().unwrap_or("—").replace('_', " ")
}

fn summary_md(a: &Assessment, framework: &Value) -> String {
    let s = &framework["summary"];
    let mut out = format!(
        "# {} — controls mapping\n\n_{}._\n\nAccount {} (id {}){}. Catalog `{}` version {} (SHA-256 `{}`), {}.\n\n\
![coverage](charts/{}.svg)\n\n\
| | requirements |\n|---|---|\n| automated | {} |\n| partial | {} |\n| organizational | {} |\n| not applicable | {} |\n| **satisfied** | {} |\n| **not satisfied** | {} |\n| **not assessed** | {} |\n\n\
| control | title | coverage | result | reasons |\n|---|---|---|---|---|\n",
        framework["title"].as_str().unwrap_or(""),
        DISCLAIMER,
        a.scope["account"]["name"].as_str().unwrap_or(""),
        a.scope["account"]["id"],
        match a.scope["agent"].as_object() {
            Some(ag) => format!(", agent {} (id {})", ag["name"].as_str().unwrap_or(""), ag["id"]),
            None => String::new(),
        },
        framework["id"].as_str().unwrap_or(""),
        framework["catalog_version"].as_str().unwrap_or(""),
        framework["catalog_sha256"].as_str().unwrap_or(""),
        framework["edition"].as_str().unwrap_or(""),
        framework["id"].as_str().unwrap_or(""),
        s["coverage"]["automated"], s["coverage"]["partial"], s["coverage"]["organizational"], s["coverage"]["not_applicable"],
        s["result"]["satisfied"], s["result"]["not_satisfied"], s["result"]["not_assessed"],
    );
    for c in framework["controls"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or("");
        let reasons: Vec<&str> = c["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "| [{}](controls/{}.md) | {} | {} | {} | {} |\n",
            md_escape(id),
            file_name(id),
            md_escape(c["title"].as_str().unwrap_or("")),
            c["coverage"].as_str().unwrap_or("").replace('_', " "),
            result_label(c),
            md_escape(&reasons.join("; ")),
        ));
    }
    out
}

fn control_md(c: &Value, framework: &Value, digests: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "# {} {}\n\n_{}_ · framework `{}`\n\n- Coverage: **{}**\n- Result: **{}**\n",
        c["id"].as_str().unwrap_or(""),
        c["title"].as_str().unwrap_or(""),
        DISCLAIMER,
        framework["id"].as_str().unwrap_or(""),
        c["coverage"].as_str().unwrap_or("").replace('_', " "),
        result_label(c),
    );
    let reasons: Vec<&str> = c["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !reasons.is_empty() {
        out.push_str("\n## Reasons\n\n");
        for r in reasons {
            out.push_str(&format!("- {r}\n"));
        }
    }
    let checks: Vec<&str> = c["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if checks.is_empty() {
        out.push_str("\nNo platform check evidences this control: it is organizational.\n");
    } else {
        out.push_str("\n## Evidence\n\n| check | what it establishes | file | SHA-256 |\n|---|---|---|---|\n");
        for id in checks {
            let file = format!("evidence/{id}.json");
            out.push_str(&format!(
                "| `{id}` | {} | [{file}](../{file}) | `{}` |\n",
                crate::checks::title(id),
                digests.get(&file).map(String::as_str).unwrap_or("")
            ));
        }
    }
    if let Some(actions) = c["actions"].as_array().filter(|a| !a.is_empty()) {
        out.push_str(&format!(
            "\n## NIST AI 600-1 suggested actions\n\nThe generative AI profile (July 2024) lists {} action(s) under this subcategory. \
An action evidenced by platform checks has its own result; the others are organizational.\n\n\
| action | evidenced by | result | note |\n|---|---|---|---|\n",
            actions.len()
        ));
        for a in actions {
            let checks: Vec<String> = a["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| format!("`{k}`"))
                .collect();
            let mut note = a["note"].as_str().unwrap_or("").to_string();
            let reasons: Vec<&str> = a["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !reasons.is_empty() {
                note = format!("{note} Reasons: {}", reasons.join("; "));
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                md_escape(a["id"].as_str().unwrap_or("")),
                if checks.is_empty() {
                    "organizational".to_string()
                } else {
                    checks.join(", ")
                },
                result_label(a),
                md_escape(note.trim()),
            ));
        }
    }
    if let Some(s) = c["customer_supplies"].as_str() {
        out.push_str(&format!("\n## The customer supplies\n\n{s}\n"));
    }
    out
}

fn not_covered_md(framework: &Value) -> String {
    let mut out = format!(
        "# Not covered by the platform — {}\n\nThese requirements are listed, never hidden. For each, what the customer must supply.\n\n| requirement | title | coverage | the customer supplies |\n|---|---|---|---|\n",
        framework["title"].as_str().unwrap_or("")
    );
    for c in framework["controls"].as_array().into_iter().flatten() {
        if c["coverage"] == "automated" {
            continue;
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_escape(c["id"].as_str().unwrap_or("")),
            md_escape(c["title"].as_str().unwrap_or("")),
            c["coverage"].as_str().unwrap_or("").replace('_', " "),
            md_escape(c["customer_supplies"].as_str().unwrap_or("")),
        ));
    }
    out
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds the package of one framework from an assessment. `sign` signs
/// bytes with the deployment's key; `verifier_key` is its public half.
pub fn build(
    a: &Assessment,
    framework_id: &str,
    verifier_key: &str,
    sign: &Signer<'_>,
) -> Result<Package, PackageError> {
    let framework = a.report["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["id"] == framework_id)
        .cloned()
        .ok_or_else(|| {
            PackageError::Zip(format!("framework {framework_id} is not in the report"))
        })?;
    // The report inside a package holds this framework only.
    let mut report = a.report.clone();
    report["frameworks"] = json!([framework.clone()]);
    report["catalogs"] = json!(a.report["catalogs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["framework"] == framework_id)
        .cloned()
        .collect::<Vec<_>>());
    if let Some(list) = a.report["not_covered"].as_array() {
        report["not_covered"] = json!(list
            .iter()
            .filter(|c| c["framework"] == framework_id)
            .cloned()
            .collect::<Vec<_>>());
    }
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for c in &a.checks {
        files.insert(c.evidence_file.clone(), evidence_bytes(c, &a.scope));
    }
    let digests: BTreeMap<String, String> =
        files.iter().map(|(k, v)| (k.clone(), sha_hex(v))).collect();
    let mut report_bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| PackageError::Zip(e.to_string()))?;
    report_bytes.push(b'\n');
    files.insert("report.json".into(), report_bytes.clone());
    let mut oscal = serde_json::to_vec_pretty(&crate::oscal::assessment_results(&report))
        .map_err(|e| PackageError::Zip(e.to_string()))?;
    oscal.push(b'\n');
    files.insert("oscal/assessment-results.json".into(), oscal);
    let markdown = summary_md(a, &framework);
    files.insert(SUMMARY.into(), markdown.clone().into_bytes());
    files.insert("README.md".into(), readme(a, &framework).into_bytes());
    files.insert(
        "not-covered.md".into(),
        not_covered_md(&framework).into_bytes(),
    );
    files.insert(
        format!("charts/{framework_id}.svg"),
        coverage_svg(&framework).into_bytes(),
    );
    for c in framework["controls"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or("");
        files.insert(
            format!("controls/{}.md", file_name(id)),
            control_md(c, &framework, &digests).into_bytes(),
        );
    }
    files.insert(
        "verifier-key.txt".into(),
        format!("{verifier_key}\n").into_bytes(),
    );
    let manifest = json!({
        "files": files.iter().map(|(k, v)| json!({"path": k, "sha256": sha_hex(v), "size": v.len()})).collect::<Vec<_>>(),
    });
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| PackageError::Zip(e.to_string()))?;
    manifest_bytes.push(b'\n');
    files.insert("manifest.json".into(), manifest_bytes);
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": files.iter().map(|(k, v)| json!({"name": k, "digest": {"sha256": sha_hex(v)}})).collect::<Vec<_>>(),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "disclaimer": DISCLAIMER,
            "framework": framework_id,
            "catalog_version": framework["catalog_version"],
            "catalog_sha256": framework["catalog_sha256"],
            "scope": {"account_id": a.scope["account"]["id"], "agent_id": a.scope["agent"]["id"]},
            "generated_at": a.report["generated_at"],
            "report_sha256": sha_hex(&report_bytes),
        },
    });
    let payload = serde_json::to_vec(&statement).map_err(|e| PackageError::Zip(e.to_string()))?;
    let sig = sign(&pae(PAYLOAD_TYPE, &payload)).map_err(PackageError::Signing)?;
    let envelope = json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": B64.encode(&payload),
        "signatures": [{"keyid": verifier_key, "sig": B64.encode(sig)}],
    });
    let mut envelope_bytes =
        serde_json::to_vec_pretty(&envelope).map_err(|e| PackageError::Zip(e.to_string()))?;
    envelope_bytes.push(b'\n');
    files.insert(ENVELOPE.into(), envelope_bytes);

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, bytes) in &files {
        zip.start_file(name.as_str(), options)
            .map_err(|e| PackageError::Zip(e.to_string()))?;
        zip.write_all(bytes)
            .map_err(|e| PackageError::Zip(e.to_string()))?;
    }
    let bytes = zip
        .finish()
        .map_err(|e| PackageError::Zip(e.to_string()))?
        .into_inner();
    let sha256 = sha_hex(&bytes);
    let scope = match a.scope["agent"]["id"].as_i64() {
        Some(id) => format!("agent-{id}"),
        None => format!("account-{}", a.scope["account"]["id"]),
    };
    let stamp: String = a.report["generated_at"]
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    Ok(Package {
        filename: format!("thetazero-evidence-{framework_id}-{scope}-{stamp}.zip"),
        bytes,
        sha256,
        markdown,
    })
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Verification {
    pub files: usize,
    pub framework: Option<String>,
    pub key_source: String,
    /// Stable names with details: `bad_signature`, `digest_mismatch PATH`,
    /// `missing_file PATH`, `unlisted_file PATH`, `malformed ...`.
    pub findings: Vec<String>,
}

impl Verification {
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty()
    }
}

fn public_key(verifier_key: &str) -> Option<ed25519_dalek::VerifyingKey> {
    thetazero_audit::VerifierKey::parse(verifier_key).ok()?;
    // name+hex(key id)+base64(0x01 || key); base64 may itself hold '+'.
    let b64 = verifier_key.trim().splitn(3, '+').nth(2)?;
    let raw = B64.decode(b64).ok()?;
    let key: [u8; 32] = raw.get(1..)?.try_into().ok()?;
    if raw.first() != Some(&1) {
        return None;
    }
    ed25519_dalek::VerifyingKey::from_bytes(&key).ok()
}

/// Checks a package offline: the envelope's signature with `key` (or, when
/// none is pinned, the key the package carries), then every file against
/// the signed statement.
pub fn verify(bytes: &[u8], key: Option<&str>) -> Verification {
    let mut v = Verification::default();
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(a) => a,
        Err(e) => {
            v.findings.push(format!("malformed_archive {e}"));
            return v;
        }
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = match archive.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                v.findings.push(format!("malformed_archive {e}"));
                return v;
            }
        };
        let name = f.name().to_string();
        let mut data = Vec::new();
        // Files in a package are small; refuse anything absurd.
        if let Err(e) = (&mut f).take(256 << 20).read_to_end(&mut data) {
            v.findings.push(format!("malformed_archive {name}: {e}"));
            return v;
        }
        if files.insert(name.clone(), data).is_some() {
            v.findings.push(format!("duplicate_file {name}"));
        }
    }
    let Some(envelope) = files
        .get(ENVELOPE)
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
    else {
        v.findings.push(format!("missing_file {ENVELOPE}"));
        return v;
    };
    let key_text = match key {
        Some(k) => {
            v.key_source = "pinned".into();
            k.trim().to_string()
        }
        None => {
            v.key_source = "verifier-key.txt in the package (integrity only, not origin)".into();
            files
                .get("verifier-key.txt")
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default()
        }
    };
    let Some(pk) = public_key(&key_text) else {
        v.findings
            .push("bad_key the verifier key could not be parsed".into());
        return v;
    };
    let payload = envelope["payload"]
        .as_str()
        .and_then(|p| B64.decode(p).ok());
    let Some(payload) = payload else {
        v.findings.push("malformed_envelope no payload".into());
        return v;
    };
    if envelope["payloadType"] != PAYLOAD_TYPE {
        v.findings
            .push("malformed_envelope wrong payloadType".into());
        return v;
    }
    let message = pae(PAYLOAD_TYPE, &payload);
    let signed = envelope["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["sig"]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .and_then(|s| ed25519_dalek::Signature::from_slice(&s).ok())
                .is_some_and(|sig| pk.verify_strict(&message, &sig).is_ok())
        });
    if !signed {
        v.findings
            .push("bad_signature no signature by this key over the manifest".into());
        return v;
    }
    let Ok(statement) = serde_json::from_slice::<Value>(&payload) else {
        v.findings.push("malformed_statement".into());
        return v;
    };
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        v.findings.push("malformed_statement wrong types".into());
        return v;
    }
    v.framework = statement["predicate"]["framework"]
        .as_str()
        .map(str::to_string);
    let mut listed = BTreeMap::new();
    for s in statement["subject"].as_array().into_iter().flatten() {
        if let (Some(name), Some(d)) = (s["name"].as_str(), s["digest"]["sha256"].as_str()) {
            listed.insert(name.to_string(), d.to_string());
        }
    }
    for (name, digest) in &listed {
        match files.get(name) {
            None => v.findings.push(format!("missing_file {name}")),
            Some(data) if &sha_hex(data) != digest => {
                v.findings.push(format!("digest_mismatch {name}"))
            }
            Some(_) => {}
        }
    }
    for name in files.keys() {
        if name != ENVELOPE && !listed.contains_key(name) {
            v.findings.push(format!("unlisted_file {name}"));
        }
    }
    v.files = listed.len();
    v
}
