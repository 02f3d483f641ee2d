//! `thetazero audit`: query the log, save its checkpoint, export it, and
//! verify an export offline, against a pinned verifier key and, if given,
//! checkpoints saved earlier.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine;
use clap::Subcommand;
use serde_json::json;
use thetazero_audit::bundle::Line;
use thetazero_audit::merkle::{leaf_hash, node_hash};
use thetazero_audit::Hash;
use thetazero_client::Client;

use super::{exit, fail, open_out, Connection, Out};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the audit verifier key: the server's, or the one of a local
    /// signing key file.
    Key {
        /// Read it from this signing key file instead of asking the server.
        #[arg(long)]
        signing_key_file: Option<PathBuf>,
    },
    /// List the caller's audit events, oldest first.
    Query {
        /// From (inclusive): RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// To (inclusive): RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        /// Only these action types (comma-separated).
        #[arg(long)]
        action_types: Option<String>,
        #[arg(long)]
        violations_only: bool,
        #[arg(long)]
        agent: Option<i64>,
        #[arg(long)]
        execution: Option<i64>,
        /// Events after this leaf index.
        #[arg(long)]
        cursor: Option<u64>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Save the latest signed checkpoint of the caller's log (the note);
    /// `audit verify --checkpoint` later checks an export against it.
    Checkpoint {
        /// Where the note goes (`-`: standard output).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Export the caller's log: a verifiable bundle or CSV for review.
    Export {
        #[arg(long, value_parser = ["bundle", "csv"])]
        format: String,
        /// Where it goes (`-`: standard output).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle offline against a pinned verifier key.
    Verify {
        bundle: PathBuf,
        /// A file holding the verifier key (as printed by `audit key`).
        #[arg(long)]
        key: PathBuf,
        /// A checkpoint saved earlier (`audit checkpoint`); the bundle's
        /// entries must reproduce its root. Repeat for several.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
    },
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    match command {
        Command::Key {
            signing_key_file: Some(path),
        } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let signer = thetazero_audit::AuditSigner::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let key = signer.verifier_key().as_str().to_string();
            out.print(&json!({ "verifier_key": key }), || println!("{key}"))?;
        }
        Command::Key {
            signing_key_file: None,
        } => {
            let client = Client::new(&conn.url, conn.api_key.clone())?;
            let key = client.audit_key().await?;
            out.print(&json!({ "verifier_key": key }), || println!("{key}"))?;
        }
        Command::Query {
            from,
            to,
            action_types,
            violations_only,
            agent,
            execution,
            cursor,
            limit,
        } => {
            let client = conn.client()?;
            let mut q = form_query(&[
                ("from", from),
                ("to", to),
                ("actionTypes", action_types),
                ("agentId", agent.map(|a| a.to_string())),
                ("executionId", execution.map(|e| e.to_string())),
                ("cursor", cursor.map(|c| c.to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ]);
            if violations_only {
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str("violationsOnly=true");
            }
            let list = client.audit(&q).await?;
            out.print(&list, || {
                for e in &list.events {
                    println!(
                        "{:<6} {} {:<22} agent={} execution={}{} {}",
                        e.leaf_index,
                        e.timestamp,
                        e.action_type,
                        e.agent_id.map_or("-".into(), |a| a.to_string()),
                        e.execution_id.map_or("-".into(), |x| x.to_string()),
                        if e.is_violation { " VIOLATION" } else { "" },
                        e.description
                    );
                }
                println!("{} of {} events", list.events.len(), list.total);
            })?;
        }
        Command::Checkpoint { out: path } => {
            let client = conn.client()?;
            let cp = client.audit_checkpoint().await?;
            let note = cp["checkpoint"]
                .as_str()
                .ok_or_else(|| fail(exit::NOT_FOUND, "the log has no signed checkpoint yet"))?;
            let mut w = open_out(&path)?;
            w.write_all(note.as_bytes())?;
            w.flush()?;
            if path.as_os_str() != "-" {
                let summary = json!({"origin": cp["origin"], "size": cp["size"], "out": path});
                out.print(&summary, || {
                    eprintln!(
                        "wrote the checkpoint of {} at size {} to {}",
                        super::cell(&cp["origin"]),
                        cp["size"],
                        path.display()
                    )
                })?;
            }
        }
        Command::Export { format, out: path } => {
            let client = conn.client()?;
            let mut w = open_out(&path)?;
            let bytes = client.export_audit(&format, &mut w).await?;
            w.flush()?;
            drop(w);
            // On standard output the export is the output; say nothing more.
            if path.as_os_str() != "-" {
                let summary = json!({"bytes": bytes, "out": path});
                out.print(&summary, || {
                    eprintln!("wrote {bytes} bytes to {}", path.display())
                })?;
            }
        }
        Command::Verify {
            bundle,
            key,
            checkpoints,
        } => verify(out, bundle, key, checkpoints)?,
    }
    Ok(())
}

fn form_query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

fn verify(out: Out, bundle: PathBuf, key: PathBuf, pinned: Vec<PathBuf>) -> Result<()> {
    let key_text =
        std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
    let key = thetazero_audit::VerifierKey::parse(key_text.trim())
        .map_err(|e| fail(exit::USAGE, format!("verifier key: {e}")))?;
    let file =
        std::fs::File::open(&bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let report = thetazero_audit::verify_bundle(std::io::BufReader::new(file), &key);
    let mut checks: Vec<String> = report.checks.iter().map(|c| c.to_string()).collect();
    let mut findings: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    if !pinned.is_empty() {
        let (origin, leaves) = read_leaves(&bundle)?;
        for path in &pinned {
            let note = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            match key.open_checkpoint(&note, origin.as_deref()) {
                Err(e) => findings.push(format!(
                    "pinned_checkpoint_invalid: {}: {e}",
                    path.display()
                )),
                Ok(cp) if cp.size > leaves.len() as u64 => findings.push(format!(
                    "pinned_checkpoint_beyond_entries: {} has size {} > {} entries",
                    path.display(),
                    cp.size,
                    leaves.len()
                )),
                Ok(cp) => {
                    if root(&leaves[..cp.size as usize]) == cp.root {
                        checks.push(format!(
                            "pinned checkpoint {} (size {}): the entries reproduce its root",
                            path.display(),
                            cp.size
                        ));
                    } else {
                        findings.push(format!(
                            "pinned_checkpoint_root_mismatch: {} (size {})",
                            path.display(),
                            cp.size
                        ));
                    }
                }
            }
        }
    }
    let valid = findings.is_empty();
    let summary = json!({
        "valid": valid,
        "entries": report.entries,
        "checks": checks,
        "findings": findings,
    });
    out.print(&summary, || {
        for check in &checks {
            println!("checked: {check}");
        }
        for finding in &findings {
            println!("FOUND: {finding}");
        }
        if valid {
            println!("the bundle verifies");
        }
    })?;
    if !valid {
        return Err(fail(
            exit::FAILED_CHECK,
            format!("the bundle does not verify ({} findings)", findings.len()),
        ));
    }
    Ok(())
}

/// The bundle's origin and the hash of every entry, in leaf order.
fn read_leaves(path: &PathBuf) -> Result<(Option<String>, Vec<Hash>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut origin = None;
    let mut leaves = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
            continue;
        };
        match parsed {
            Line::Header { origin: o, .. } => origin = Some(o),
            Line::Entry {
                leaf_index,
                leaf_b64,
                ..
            } if leaf_index == leaves.len() as u64 => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(leaf_b64)
                    .map_err(|e| anyhow::anyhow!("entry {leaf_index}: {e}"))?;
                leaves.push(leaf_hash(&bytes));
            }
            // Gaps and repeats are the bundle verifier's findings.
            _ => {}
        }
    }
    Ok((origin, leaves))
}

/// The RFC 6962 Merkle tree hash of `leaves`.
fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => {
            use sha2::Digest;
            Hash(sha2::Sha256::digest([]).into())
        }
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            node_hash(root(&leaves[..k]), root(&leaves[k..]))
        }
    }
}
