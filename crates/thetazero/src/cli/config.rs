//! `thetazero config check`: read the configuration exactly as `serve`
//! would (flags, environment, config file) and report what it resolves to.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::{exit, fail, Out};
use crate::serve::{clipped_templates, Config, ServeArgs};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration as `thetazero serve` reads it (pass the
    /// same flags, e.g. `--config FILE`); report what it resolves to and
    /// the templates whose defaults the ceilings clip. Exit 7 if invalid.
    Check {
        #[command(flatten)]
        args: ServeArgs,
    },
}

pub fn run(out: Out, command: Command) -> Result<()> {
    let Command::Check { args } = command;
    let config = match Config::resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("{e:#}");
            if out.json {
                out.json_line(&json!({"valid": false, "error": message}))?;
            }
            return Err(fail(exit::FAILED_CHECK, message));
        }
    };
    if let Err(e) = config.listen.parse::<std::net::SocketAddr>() {
        let message = format!("invalid listen address {:?}: {e}", config.listen);
        if out.json {
            out.json_line(&json!({"valid": false, "error": message}))?;
        }
        return Err(fail(exit::FAILED_CHECK, message));
    }
    let clipped: Vec<_> = clipped_templates(&config)
        .into_iter()
        .map(|(t, l)| {
            json!({
                "template": t.name(),
                "memory_mb": l.memory_mb,
                "cpu_time_ms": l.cpu_time_ms,
                "max_api_calls_per_run": l.max_api_calls_per_run,
                "max_api_calls_per_minute": l.max_api_calls_per_minute,
            })
        })
        .collect();
    let c = config.ceilings;
    let summary = json!({
        "valid": true,
        "listen": config.listen,
        "data_dir": config.data_dir,
        "database": if config.database_url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        "signing_key_file": config.signing_key_file,
        "deployment_name": config.deployment_name,
        "log_format": config.log_format,
        "sandbox_mode": match config.sandbox.mode {
            thetazero_runtime::sandbox::EngineMode::Process(_) => "process",
            thetazero_runtime::sandbox::EngineMode::InProcess => "in_process",
        },
        "ceilings": {
            "memory_mb": c.memory_mb,
            "cpu_time_ms": c.cpu_time_ms,
            "max_api_calls_per_run": c.max_api_calls_per_run,
            "max_api_calls_per_minute": c.max_api_calls_per_minute,
        },
        "clipped_templates": clipped,
        "inference": config.inference.is_some(),
        "shutdown_grace_ms": config.shutdown_grace.as_millis() as u64,
    });
    out.print(&summary, || {
        println!("the configuration is valid");
        for key in [
            "listen",
            "data_dir",
            "database",
            "signing_key_file",
            "deployment_name",
            "log_format",
            "sandbox_mode",
            "ceilings",
            "inference",
            "shutdown_grace_ms",
        ] {
            println!("{key:<18} {}", super::cell(&summary[key]));
        }
        for t in &clipped {
            println!(
                "clipped: the ceilings clip template {}: its runs get memory_mb {}, cpu_time_ms {}, max_api_calls_per_run {}, max_api_calls_per_minute {}",
                super::cell(&t["template"]),
                t["memory_mb"],
                t["cpu_time_ms"],
                t["max_api_calls_per_run"],
                t["max_api_calls_per_minute"]
            );
        }
    })
}
