//! `thetazero kill`, `halt` and `revive`: stop one agent, halt the caller's
//! account or the whole deployment, and bring them back.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;
use thetazero_api::types::PatchAgentRequest;

use super::{cell, Connection, Out};

#[derive(Subcommand, Debug)]
pub enum HaltCommand {
    /// Halt the caller's account: its runs stop, new ones are refused.
    Account {
        #[arg(long)]
        reason: String,
    },
    /// Halt every account (an owner key of the deployment's first account).
    Deployment {
        #[arg(long)]
        reason: String,
    },
    /// The halt in force for the caller, if any.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum ReviveCommand {
    /// Set a killed agent ready again (a key with the killswitch scope).
    Agent { id: i64 },
    /// Clear the account's halt.
    Account {
        #[arg(long)]
        reason: String,
    },
    /// Clear the deployment's halt.
    Deployment {
        #[arg(long)]
        reason: String,
    },
}

fn print_outcome(what: &str, v: &Value) {
    println!(
        "{what}: {} run(s) ended, confirmed {}, in {} ms",
        cell(&v["terminated"]),
        cell(&v["confirmed"]),
        cell(&v["elapsed_ms"])
    );
}

/// `thetazero kill AGENT --reason R`
pub async fn kill(conn: Connection, out: Out, agent: i64, reason: String) -> Result<()> {
    let client = conn.client()?;
    let v = client.kill_agent(agent, &reason).await?;
    out.print(&v, || print_outcome(&format!("killed agent {agent}"), &v))
}

pub async fn halt(conn: Connection, out: Out, command: HaltCommand) -> Result<()> {
    let client = conn.client()?;
    match command {
        HaltCommand::Account { reason } => {
            let v = client.set_halt(true, &reason, "account").await?;
            out.print(&v, || print_outcome("halted the account", &v))
        }
        HaltCommand::Deployment { reason } => {
            let v = client.set_halt(true, &reason, "deployment").await?;
            out.print(&v, || print_outcome("halted the deployment", &v))
        }
        HaltCommand::Status => {
            let v = client.halt_state().await?;
            out.print(&v, || {
                if v["halted"] == Value::Bool(true) {
                    println!(
                        "halted ({}) since {}: {}",
                        cell(&v["scope"]),
                        cell(&v["since"]),
                        cell(&v["reason"])
                    );
                } else {
                    println!("not halted");
                }
            })
        }
    }
}

pub async fn revive(conn: Connection, out: Out, command: ReviveCommand) -> Result<()> {
    let client = conn.client()?;
    match command {
        ReviveCommand::Agent { id } => {
            let patch = PatchAgentRequest {
                status: Some("ready".into()),
                ..PatchAgentRequest::default()
            };
            let agent = client.update_agent(id, &patch).await?;
            out.print(&agent, || {
                println!(
                    "agent {} ({}) is {}",
                    agent.agent.id, agent.agent.name, agent.agent.status
                )
            })
        }
        ReviveCommand::Account { reason } => {
            let v = client.set_halt(false, &reason, "account").await?;
            out.print(&v, || println!("the account's halt is cleared"))
        }
        ReviveCommand::Deployment { reason } => {
            let v = client.set_halt(false, &reason, "deployment").await?;
            out.print(&v, || println!("the deployment's halt is cleared"))
        }
    }
}
