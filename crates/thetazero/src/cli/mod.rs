//! The command-line client: one module per command group. Commands that talk
//! to a running server go through the Rust client, with `--url` and
//! `--api-key` defaulting to the same environment variables the SDKs read;
//! the others (`keys recover`, `backup`, `config check`, `safety`, `audit
//! verify`) work on local files.
//!
//! Output is for people by default; `--json` prints one JSON document per
//! answer (one per line for commands that follow a stream). Exit codes are in
//! [`exit`].

pub mod accounts;
pub mod agents;
pub mod approvals;
pub mod audit;
pub mod backup;
pub mod config;
pub mod executions;
pub mod keys;
pub mod killswitch;
pub mod run;
pub mod safety;
pub mod stream;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;
use thetazero_client::{Client, ClientError};

use crate::serve::ServeArgs;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Any other error: the server failed, a file could not be read...
    pub const ERROR: u8 = 1;
    /// Bad usage: unknown flag, missing argument, or a request the server
    /// refused as invalid (HTTP 400, 413, 415).
    pub const USAGE: u8 = 2;
    /// What was named does not exist (or belongs to another account).
    pub const NOT_FOUND: u8 = 3;
    /// No key, a wrong key, or a key without the scope the command needs.
    pub const DENIED: u8 = 4;
    /// Refused in the current state: conflict, killed or disabled agent,
    /// halted account, the last key that can manage keys.
    pub const CONFLICT: u8 = 5;
    /// The server could not be reached, is unavailable or rate-limits the
    /// key: worth retrying later.
    pub const UNAVAILABLE: u8 = 6;
    /// The command worked and its answer is negative: a run that did not
    /// complete, a bundle that does not verify, a config that is invalid.
    pub const FAILED_CHECK: u8 = 7;
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Fails with `code`.
pub fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CliError {
        code,
        message: message.into(),
    })
}

/// The exit code an error maps to.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Api { status, code, .. } => match code.as_str() {
                    "not_found" => exit::NOT_FOUND,
                    "unauthorized" | "missing_scope" | "forbidden" => exit::DENIED,
                    "conflict" | "last_key_manager" | "agent_killed" | "agent_disabled"
                    | "global_halt" => exit::CONFLICT,
                    "rate_limited" | "service_unavailable" => exit::UNAVAILABLE,
                    _ if matches!(status, 400 | 413 | 415) => exit::USAGE,
                    _ => exit::ERROR,
                },
                ClientError::Transport(_) => exit::UNAVAILABLE,
                ClientError::Unexpected { .. } => exit::ERROR,
            };
        }
    }
    exit::ERROR
}

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
    pub fn client(&self) -> Result<Client> {
        if self.api_key.is_none() {
            return Err(fail(
                exit::DENIED,
                "no API key: pass --api-key or set THETAZERO_API_KEY",
            ));
        }
        Ok(Client::new(&self.url, self.api_key.clone())?)
    }
}

/// How answers are printed.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints `value` as one line of JSON.
    pub fn json_line(&self, value: &impl serde::Serialize) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, value)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        Ok(())
    }

    /// Prints `value` as JSON with `--json`, otherwise runs `human`.
    pub fn print(&self, value: &impl serde::Serialize, human: impl FnOnce()) -> Result<()> {
        if self.json {
            self.json_line(value)
        } else {
            human();
            Ok(())
        }
    }
}

/// The store a local command works on, resolved as `thetazero serve`
/// resolves it (flags, then environment, then the config file).
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The server's data directory.
    #[arg(long, env = "THETAZERO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's database URL (default: thetazero.db in the data dir).
    #[arg(long, env = "THETAZERO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The deployment's signing key (default: signing.key in the data dir).
    #[arg(long, env = "THETAZERO_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// The server's TOML config file.
    #[arg(long, env = "THETAZERO_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    pub fn resolve(&self) -> Result<crate::serve::Config> {
        crate::serve::Config::resolve(&ServeArgs {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            signing_key_file: self.signing_key_file.clone(),
            config: self.config.clone(),
            ..ServeArgs::default()
        })
    }
}

/// Where an `--out` goes: `-` is standard output.
pub fn open_out(path: &Path) -> Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::new(file)))
}

/// Reads a whole file; `-` is standard input.
pub fn read_text(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads a JSON document from a file (`-`: standard input).
pub fn read_json(path: &Path) -> Result<Value> {
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .map_err(|e| fail(exit::USAGE, format!("{} is not JSON: {e}", path.display())))
}

/// A value for a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a duration: `500ms`, `30s`, `10m`, `2h`, `1d`, or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 10m, 2h, 1d)"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert!(parse_duration_ms("10y").is_err());
        assert!(parse_duration_ms("m").is_err());
    }

    #[test]
    fn api_errors_map_to_stable_exit_codes() {
        let api = |status: u16, code: &str| {
            anyhow::Error::new(ClientError::Api {
                status,
                code: code.into(),
                message: String::new(),
                request_id: String::new(),
            })
        };
        assert_eq!(exit_code(&api(404, "not_found")), exit::NOT_FOUND);
        assert_eq!(exit_code(&api(403, "missing_scope")), exit::DENIED);
        assert_eq!(exit_code(&api(401, "unauthorized")), exit::DENIED);
        assert_eq!(exit_code(&api(409, "last_key_manager")), exit::CONFLICT);
        assert_eq!(exit_code(&api(503, "global_halt")), exit::CONFLICT);
        assert_eq!(exit_code(&api(429, "rate_limited")), exit::UNAVAILABLE);
        assert_eq!(exit_code(&api(400, "invalid_config")), exit::USAGE);
        assert_eq!(exit_code(&api(500, "internal_error")), exit::ERROR);
        assert_eq!(
            exit_code(&fail(exit::FAILED_CHECK, "x").context("outer")),
            exit::FAILED_CHECK
        );
    }
}
