//! `thetazero approvals`: agents' permission requests: list, show, approve,
//! deny, and watch for new ones.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{cell, parse_duration_ms, Connection, Out};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List requests, newest first.
    List {
        /// pending, approved, denied or expired.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Show one request.
    Show { id: i64 },
    /// Approve a pending request.
    Approve {
        id: i64,
        /// The grant lapses this long after approval (e.g. 30m, 2h, 1d).
        #[arg(long, value_parser = parse_duration_ms)]
        expires_in: Option<u64>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending request.
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Print pending requests as they arrive, until interrupted.
    Watch {
        #[arg(long)]
        agent: Option<i64>,
        /// How often to look (default 1s).
        #[arg(long, value_parser = parse_duration_ms, default_value = "1s")]
        interval: u64,
    },
}

fn line(r: &Value) -> String {
    format!(
        "{:<6} {:<9} agent={:<5} expires={} permissions={} justification={}",
        cell(&r["id"]),
        cell(&r["status"]),
        cell(&r["agent_id"]),
        cell(&r["expires_at"]),
        r["permissions"],
        cell(&r["justification"])
    )
}

fn print_request(r: &Value) {
    for (k, v) in r.as_object().into_iter().flatten() {
        println!("{k:<18} {}", cell(v));
    }
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    let client = conn.client()?;
    match command {
        Command::List {
            status,
            agent,
            limit,
        } => {
            let v = client
                .permission_requests(status.as_deref(), agent, limit)
                .await?;
            out.print(&v, || {
                for r in v["requests"].as_array().into_iter().flatten() {
                    println!("{}", line(r));
                }
            })?;
        }
        Command::Show { id } => {
            let v = client.permission_request(id).await?;
            out.print(&v, || print_request(&v["request"]))?;
        }
        Command::Approve {
            id,
            expires_in,
            reason,
        } => {
            let v = client
                .decide_permission_request(id, true, reason.as_deref(), expires_in)
                .await?;
            out.print(&v, || {
                println!(
                    "approved request {id}; the grant {}",
                    match v["request"]["grant_expires_at"].as_str() {
                        Some(t) => format!("lapses at {t}"),
                        None => "does not lapse".into(),
                    }
                )
            })?;
        }
        Command::Deny { id, reason } => {
            let v = client
                .decide_permission_request(id, false, Some(&reason), None)
                .await?;
            out.print(&v, || println!("denied request {id}"))?;
        }
        Command::Watch { agent, interval } => {
            let mut seen = HashSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(interval.max(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let v = client
                    .permission_requests(Some("pending"), agent, 500)
                    .await?;
                let mut fresh: Vec<&Value> = v["requests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["id"].as_i64().is_some_and(|id| seen.insert(id)))
                    .collect();
                // Oldest first, as they arrived.
                fresh.reverse();
                for r in fresh {
                    if out.json {
                        out.json_line(r)?;
                    } else {
                        println!("{}", line(r));
                    }
                }
            }
        }
    }
    Ok(())
}
