//! `thetazero run`: run an agent and print its result; a progress line on
//! standard error while a long run goes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::executions::print_execution;
use super::{exit, fail, read_json, Connection, Out};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The agent.
    pub agent: i64,
    /// A JSON file with the run's input (`-`: standard input).
    #[arg(long, conflicts_with = "input_json")]
    pub input: Option<PathBuf>,
    /// The run's input as JSON on the command line.
    #[arg(long = "input-json")]
    pub input_json: Option<String>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(conn: Connection, out: Out, args: RunArgs) -> Result<()> {
    let client = conn.client()?;
    let input: Option<Value> = match (&args.input, &args.input_json) {
        (Some(path), _) => Some(read_json(path)?),
        (None, Some(text)) => Some(
            serde_json::from_str(text)
                .map_err(|e| fail(exit::USAGE, format!("--input-json is not JSON: {e}")))?,
        ),
        (None, None) => None,
    };
    let progress = (!args.quiet).then(|| tokio::spawn(progress(args.agent)));
    let result = client.execute(args.agent, input).await;
    if let Some(p) = progress {
        p.abort();
        // Whatever the progress line left on a terminal is cleared.
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
    }
    let e = result?;
    out.print(&e, || print_execution(&e.execution))?;
    if e.execution.status != "completed" {
        return Err(fail(
            exit::FAILED_CHECK,
            format!(
                "execution {} ended {}",
                e.execution.execution_id, e.execution.status
            ),
        ));
    }
    Ok(())
}

/// After a second, says the run is still going: a line that updates itself
/// on a terminal, a line every few seconds elsewhere.
async fn progress(agent: i64) {
    let start = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    loop {
        let secs = start.elapsed().as_secs();
        if terminal {
            eprint!("\rrunning agent {agent}: {secs}s");
        } else {
            eprintln!("running agent {agent}: {secs}s");
        }
        tokio::time::sleep(every).await;
    }
}
