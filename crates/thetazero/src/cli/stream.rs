//! `thetazero stream`: tail the live audit stream.

use anyhow::Result;
use clap::Args;

use super::{cell, Connection, Out};

#[derive(Args, Debug)]
pub struct StreamArgs {
    /// Only events of this agent.
    #[arg(long)]
    pub agent: Option<i64>,
    /// Only events of this execution.
    #[arg(long)]
    pub execution: Option<i64>,
    /// Replay events from this time (RFC 3339 or YYYY-MM-DD) first.
    #[arg(long)]
    pub since: Option<String>,
    /// Resume after this leaf index.
    #[arg(long)]
    pub after: Option<u64>,
}

pub async fn run(conn: Connection, out: Out, args: StreamArgs) -> Result<()> {
    let client = conn.client()?;
    let mut after = args.after;
    let mut since = args.since.clone();
    loop {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(a) = args.agent {
            query.append_pair("agentId", &a.to_string());
        }
        if let Some(e) = args.execution {
            query.append_pair("executionId", &e.to_string());
        }
        // A reconnection resumes after the last event, not from `since`.
        if let Some(a) = after {
            query.append_pair("after", &a.to_string());
        } else if let Some(s) = since.take() {
            query.append_pair("since", &s);
        }
        let mut stream = client.audit_stream(&query.finish()).await?;
        while let Some(event) = stream.next().await? {
            match event.event.as_str() {
                "audit" => {
                    after = event.id.or(after);
                    if out.json {
                        out.json_line(&event.data)?;
                    } else {
                        let d = &event.data;
                        println!(
                            "{:<6} {} {:<22} agent={} execution={}{} {}",
                            cell(&d["leaf_index"]),
                            cell(&d["timestamp"]),
                            cell(&d["action_type"]),
                            cell(&d["agent_id"]),
                            cell(&d["execution_id"]),
                            if d["is_violation"] == true {
                                " VIOLATION"
                            } else {
                                ""
                            },
                            cell(&d["description"])
                        );
                    }
                }
                "connected" if !out.json => eprintln!("following the audit stream"),
                // The server ends a stream after its maximum duration; follow
                // on from the last event seen.
                "timeout" => break,
                _ => {}
            }
        }
    }
}
