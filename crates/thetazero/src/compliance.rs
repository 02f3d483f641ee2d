//! `thetazero compliance`: status, reports, evidence packages and the
//! kill-switch drill of a running server, and the offline verification of
//! a package.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cli::Connection;

#[derive(Args, Debug)]
pub struct Scope {
    /// A framework id (eu_ai_act, soc2, nist_ai_rmf, iso_42001,
    /// owasp_llm_top10); repeat for several. Default: all, or an agent's own.
    #[arg(long = "framework")]
    frameworks: Vec<String>,
    /// One agent of the account (default: the whole account).
    #[arg(long = "agent")]
    agent: Option<i64>,
    /// Start of the period (RFC 3339 or YYYY-MM-DD; default: the account's creation).
    #[arg(long)]
    from: Option<String>,
    /// End of the period (default: now).
    #[arg(long)]
    to: Option<String>,
}

impl Scope {
    fn query(&self) -> String {
        let mut q = form_query();
        if !self.frameworks.is_empty() {
            q.append_pair("frameworks", &self.frameworks.join(","));
        }
        if let Some(a) = self.agent {
            q.append_pair("agentId", &a.to_string());
        }
        if let Some(f) = &self.from {
            q.append_pair("from", f);
        }
        if let Some(t) = &self.to {
            q.append_pair("to", t);
        }
        q.finish()
    }
}

fn form_query() -> form_urlencoded::Serializer<'static, String> {
    form_urlencoded::Serializer::new(String::new())
}

#[derive(Subcommand, Debug)]
pub enum ComplianceCommand {
    /// Coverage and result per framework and control.
    Status {
        #[command(flatten)]
        scope: Scope,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        /// Write to this file (`-` is standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The full report (`thetazero.compliance-report/v1`).
    Report {
        #[command(flatten)]
        scope: Scope,
        /// `json`, `oscal` (assessment-results of this evaluation) or
        /// `oscal-component-definition` (this release's component
        /// definition; needs no server).
        #[arg(long, default_value = "json")]
        format: String,
        /// Write to this file (`-`, the default, is standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Accepted for symmetry: the report is JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate the signed evidence package of one framework (a zip).
    Package {
        /// The framework id.
        framework: String,
        /// One agent of the account (default: the whole account).
        #[arg(long = "agent")]
        agent: Option<i64>,
        /// Where to write the zip (default: the server's file name in the
        /// current directory; `-` is standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Kill-switch drill: a canary agent is started, killed and deleted in
    /// the caller's account (needs the compliance and killswitch scopes).
    Drill {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an evidence package offline: the signed manifest and every file.
    Verify {
        /// The package (zip).
        package: PathBuf,
        /// The deployment's verifier key file (`thetazero audit key`); without
        /// it the key inside the package is used, which proves integrity only.
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        None => std::io::stdout().write_all(bytes).map_err(Into::into),
        Some(p) if p == Path::new("-") => std::io::stdout().write_all(bytes).map_err(Into::into),
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display())),
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

fn table(status: &Value) -> String {
    let mut out = format!("{}\n\n", status["disclaimer"].as_str().unwrap_or(""));
    for f in status["frameworks"].as_array().into_iter().flatten() {
        let s = &f["summary"];
        out.push_str(&format!(
            "{}  (catalog {} sha256 {})\n  satisfied {}  not satisfied {}  not assessed {}  organizational {}\n",
            f["id"].as_str().unwrap_or(""),
            f["catalog_version"].as_str().unwrap_or(""),
            &f["catalog_sha256"].as_str().unwrap_or("")[..12.min(f["catalog_sha256"].as_str().unwrap_or("").len())],
            s["result"]["satisfied"],
            s["result"]["not_satisfied"],
            s["result"]["not_assessed"],
            s["coverage"]["organizational"],
        ));
        for c in f["controls"].as_array().into_iter().flatten() {
            if c["result"] == "not_satisfied" || c["result"] == "not_assessed" {
                let reasons: Vec<&str> = c["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                out.push_str(&format!(
                    "  {:<16} {:<14} {}\n",
                    c["id"].as_str().unwrap_or(""),
                    c["result"].as_str().unwrap_or("").replace('_', " "),
                    reasons.join("; ")
                ));
            }
        }
        out.push('\n');
    }
    out
}

pub async fn run(conn: Connection, command: ComplianceCommand) -> Result<()> {
    if let ComplianceCommand::Verify { package, key, json } = &command {
        return verify(package, key.as_deref(), *json);
    }
    if let ComplianceCommand::Report {
        scope, format, out, ..
    } = &command
    {
        if format == "oscal-component-definition" {
            let catalogs = thetazero_compliance::catalog::catalogs(&scope.frameworks)?;
            let at = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let doc = thetazero_compliance::oscal::component_definition(
                &catalogs,
                env!("CARGO_PKG_VERSION"),
                &at,
            );
            return write_out(out.as_deref(), &pretty(&doc));
        }
    }
    let client = conn.client()?;
    match command {
        ComplianceCommand::Status { scope, json, out } => {
            let status = client.compliance("status", &scope.query()).await?;
            let bytes = if json || out.as_deref().is_some_and(|p| p != Path::new("-")) {
                pretty(&status)
            } else {
                table(&status).into_bytes()
            };
            write_out(out.as_deref(), &bytes)
        }
        ComplianceCommand::Report {
            scope, format, out, ..
        } => {
            if format != "json" && format != "oscal" {
                anyhow::bail!(
                    "--format must be json, oscal or oscal-component-definition, not {format:?}"
                );
            }
            let mut query = scope.query();
            if format == "oscal" {
                query.push_str(if query.is_empty() {
                    "format=oscal"
                } else {
                    "&format=oscal"
                });
            }
            let report = client.compliance("report", &query).await?;
            write_out(out.as_deref(), &pretty(&report))
        }
        ComplianceCommand::Package {
            framework,
            agent,
            out,
            json,
        } => {
            let body = match agent {
                Some(a) => json!({"format": "markdown", "agent_id": a}),
                None => json!({"format": "markdown"}),
            };
            let p = client.compliance_package(&framework, &body).await?;
            let path = out.unwrap_or_else(|| PathBuf::from(&p.filename));
            write_out(Some(&path), &p.bytes)?;
            let info = json!({"filename": p.filename, "path": path.display().to_string(), "bytes": p.bytes.len(),
                              "sha256": p.sha256, "audit_leaf_index": p.leaf_index});
            let to_stdout = path == Path::new("-");
            if json && !to_stdout {
                std::io::stdout().write_all(&pretty(&info))?;
            } else if !to_stdout {
                eprintln!(
                    "wrote {} ({} bytes, sha256 {}); recorded at audit leaf {}",
                    path.display(),
                    p.bytes.len(),
                    p.sha256,
                    p.leaf_index
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "?".into())
                );
            }
            Ok(())
        }
        ComplianceCommand::Drill { json, out } => {
            let r = client.compliance_drill().await?;
            if json || out.is_some() {
                write_out(out.as_deref(), &pretty(&r))
            } else {
                let d = &r["drill"];
                println!(
                    "drill: canary {} killed, termination {} in {:.1} ms; canary deleted; recorded at audit leaf {}",
                    d["canary_name"].as_str().unwrap_or(""),
                    if d["confirmed"] == json!(true) { "confirmed" } else { "NOT confirmed" },
                    d["elapsed_ms"].as_f64().unwrap_or(0.0),
                    r["leaf_index"]
                );
                if d["confirmed"] != json!(true) {
                    anyhow::bail!("the drill did not confirm termination");
                }
                Ok(())
            }
        }
        ComplianceCommand::Verify { .. } => Ok(()),
    }
}

fn verify(package: &Path, key: Option<&Path>, json: bool) -> Result<()> {
    let bytes = std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
    let key_text = key
        .map(|k| std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display())))
        .transpose()?;
    let v = thetazero_compliance::package::verify(&bytes, key_text.as_deref());
    if json {
        std::io::stdout().write_all(&pretty(&json!({
            "valid": v.is_valid(), "files": v.files, "framework": v.framework,
            "key": v.key_source, "findings": v.findings,
        })))?;
    } else {
        for f in &v.findings {
            println!("FINDING: {f}");
        }
        println!(
            "{}: {} files, framework {}, key {}",
            if v.is_valid() { "VALID" } else { "INVALID" },
            v.files,
            v.framework.as_deref().unwrap_or("?"),
            v.key_source
        );
    }
    if v.is_valid() {
        Ok(())
    } else {
        anyhow::bail!("the package does not verify")
    }
}
