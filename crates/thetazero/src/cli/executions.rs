//! `thetazero executions`: an agent's executions, and one in full.

use anyhow::Result;
use clap::Subcommand;
use thetazero_api::types::ExecutionView;

use super::{Connection, Out};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// An agent's executions, newest first.
    List {
        /// The agent.
        #[arg(long)]
        agent: i64,
        /// Only this status (running, completed, failed, timed_out, killed,
        /// limit_exceeded, blocked).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One execution: output, error, logs, host calls, receipt.
    Show {
        /// The agent.
        #[arg(long)]
        agent: i64,
        /// The execution.
        id: i64,
    },
}

/// An execution for people: the status line, then what it produced.
pub fn print_execution(e: &ExecutionView) {
    println!(
        "execution {} of agent {}: {} in {} ms{}",
        e.execution_id,
        e.agent_id,
        e.status,
        e.duration_ms,
        e.limit
            .as_deref()
            .map(|l| format!(" (limit: {l})"))
            .unwrap_or_default()
    );
    if let Some(err) = &e.error {
        println!("error: {}", err.message);
    }
    for l in e.logs.iter().flatten() {
        println!("log [{}] {}", l.level, l.message);
    }
    if let (Some(i), Some(h)) = (e.leaf_index, &e.leaf_hash) {
        println!("receipt: leaf {i} {h}");
    }
    println!(
        "output: {}",
        serde_json::to_string_pretty(&e.output).unwrap_or_default()
    );
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    let client = conn.client()?;
    match command {
        Command::List {
            agent,
            status,
            page,
            limit,
        } => {
            let list = client
                .list_executions(agent, page, limit, status.as_deref())
                .await?;
            out.print(&list, || {
                println!(
                    "{:<8} {:<15} {:>9} {:<27} ERROR",
                    "ID", "STATUS", "MS", "STARTED"
                );
                for e in &list.executions {
                    println!(
                        "{:<8} {:<15} {:>9} {:<27} {}",
                        e.execution_id,
                        e.status,
                        e.duration_ms,
                        e.started_at,
                        e.error
                            .as_ref()
                            .map(|x| x.message.clone())
                            .unwrap_or_default()
                    );
                }
                println!("{} of {} executions", list.executions.len(), list.total);
            })?;
        }
        Command::Show { agent, id } => {
            let e = client.get_execution(agent, id).await?;
            out.print(&e, || print_execution(&e.execution))?;
        }
    }
    Ok(())
}
