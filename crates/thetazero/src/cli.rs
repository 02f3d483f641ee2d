//! Command-line client commands: each talks to a running server through the
//! Rust client, with `--url` and `--api-key` defaulting to the same
//! environment variables the SDKs read.

use anyhow::Result;
use clap::{Args, Subcommand};
use thetazero_client::Client;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of the server.
    #[arg(
        long = "url",
        env = "THETAZERO_BASE_URL",
        default_value = "http://127.0.0.1:8420",
        global = true
    )]
    pub url: String,
    /// API key (tzk_...).
    #[arg(
        long = "api-key",
        env = "THETAZERO_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
}

impl Connection {
    pub(crate) fn client(&self) -> Result<Client> {
        if self.api_key.is_none() {
            anyhow::bail!("no API key: pass --api-key or set THETAZERO_API_KEY");
        }
        Ok(Client::new(&self.url, self.api_key.clone())?)
    }
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints its secret once.
    Create {
        #[arg(long)]
        name: String,
        /// A scope to grant; repeat for several (agents:read, agents:write,
        /// agents:execute, audit:read, approvals, killswitch, compliance, keys).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Create an account; prints its owner key once.
    Create {
        #[arg(long)]
        name: String,
    },
}

pub async fn keys(conn: Connection, command: KeysCommand) -> Result<()> {
    let client = conn.client()?;
    match command {
        KeysCommand::Create { name, scopes } => {
            let created = client.create_key(&name, &scopes).await?;
            println!(
                "created key {} ({}) with scopes {}",
                created.key.id,
                created.key.name,
                created.key.scopes.join(" ")
            );
            println!("secret (shown once): {}", created.secret);
        }
        KeysCommand::List => {
            let list = client.list_keys().await?;
            println!(
                "{:<6} {:<24} {:<14} {:<9} {:<22} SCOPES",
                "ID", "NAME", "PREFIX", "STATE", "LAST USED"
            );
            for k in list.keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<6} {:<24} {:<14} {:<9} {:<22} {}",
                    k.id,
                    k.name,
                    k.prefix,
                    state,
                    k.last_used_at.as_deref().unwrap_or("never"),
                    if k.is_owner {
                        "owner (all)".to_string()
                    } else {
                        k.scopes.join(" ")
                    }
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = client.revoke_key(id).await?;
            println!("revoked key {} ({})", key.key.id, key.key.name);
        }
    }
    Ok(())
}

pub async fn accounts(conn: Connection, command: AccountsCommand) -> Result<()> {
    let client = conn.client()?;
    match command {
        AccountsCommand::Create { name } => {
            let created = client.create_account(&name).await?;
            println!(
                "created account {} ({})",
                created.account.id, created.account.name
            );
            println!("owner API key: {}", created.secret);
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the audit verifier key: the server's, or the one of a local
    /// signing key file.
    Key {
        /// Read it from this signing key file instead of asking the server.
        #[arg(long)]
        signing_key_file: Option<std::path::PathBuf>,
    },
    /// Export the caller's log: a verifiable bundle or CSV for review.
    Export {
        #[arg(long, value_parser = ["bundle", "csv"])]
        format: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Verify a bundle offline against a pinned verifier key.
    Verify {
        bundle: std::path::PathBuf,
        /// A file holding the verifier key (as printed by `audit key`).
        #[arg(long)]
        key: std::path::PathBuf,
    },
}

pub async fn audit(conn: Connection, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Key {
            signing_key_file: Some(path),
        } => {
            let text = std::fs::read_to_string(&path)?;
            let signer = thetazero_audit::AuditSigner::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            println!("{}", signer.verifier_key().as_str());
        }
        AuditCommand::Key {
            signing_key_file: None,
        } => {
            let client = Client::new(&conn.url, conn.api_key.clone())?;
            println!("{}", client.audit_key().await?);
        }
        AuditCommand::Export { format, out } => {
            let client = conn.client()?;
            let mut file = std::fs::File::create(&out)?;
            let bytes = client.export_audit(&format, &mut file).await?;
            file.sync_all()?;
            println!("wrote {bytes} bytes to {}", out.display());
        }
        AuditCommand::Verify { bundle, key } => {
            let key_text = std::fs::read_to_string(&key)?;
            let key = thetazero_audit::VerifierKey::parse(key_text.trim())
                .map_err(|e| anyhow::anyhow!("verifier key: {e}"))?;
            let file = std::fs::File::open(&bundle)?;
            let report = thetazero_audit::verify_bundle(std::io::BufReader::new(file), &key);
            for check in &report.checks {
                println!("checked: {check}");
            }
            for finding in &report.findings {
                println!("FOUND: {finding}");
            }
            if !report.is_valid() {
                anyhow::bail!(
                    "the bundle does not verify ({} findings)",
                    report.findings.len()
                );
            }
            println!("the bundle verifies");
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone, Copy)]
pub struct Thresholds {
    /// Block at or above this injection score (default 0.35).
    #[arg(long)]
    injection_threshold: Option<f32>,
    /// Block at or above this toxicity score (default 0.4).
    #[arg(long)]
    toxicity_threshold: Option<f32>,
}

impl Thresholds {
    fn filter(self) -> thetazero_safety::Filter {
        let mut config = thetazero_safety::SafetyConfig::default();
        if let Some(t) = self.injection_threshold {
            config.injection_threshold = t;
        }
        if let Some(t) = self.toxicity_threshold {
            config.toxicity_threshold = t;
        }
        thetazero_safety::Filter::new(config)
    }
}

#[derive(Subcommand, Debug)]
pub enum SafetyCommand {
    /// Read `{"text": ...}` (or `{"json": ...}`) lines on standard input,
    /// each with an optional `channel`; write one verdict line per input, in
    /// order: decision, injection, toxicity, layer, rule, channel, path.
    Scan {
        #[command(flatten)]
        thresholds: Thresholds,
    },
    /// Evaluate a labelled file of `{"text", "label"}` lines: true-positive
    /// rate, false-positive rate and balanced accuracy per category.
    Eval {
        file: std::path::PathBuf,
        /// The channel every line is scored on (input, output, fetched,
        /// prompt, completion); a line's own `channel` field wins. Default
        /// input.
        #[arg(long)]
        channel: Option<thetazero_safety::Channel>,
        #[command(flatten)]
        thresholds: Thresholds,
    },
}

pub fn safety(command: SafetyCommand) -> Result<()> {
    match command {
        SafetyCommand::Scan { thresholds } => {
            let filter = thresholds.filter();
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            thetazero_safety::scan_jsonl(&filter, stdin.lock(), stdout.lock())?;
        }
        SafetyCommand::Eval {
            file,
            channel,
            thresholds,
        } => {
            let filter = thresholds.filter();
            let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
            let report = thetazero_safety::eval_jsonl_on(&filter, reader, channel)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print!("{report}");
        }
    }
    Ok(())
}
