//! `thetazero agents`: list, show, deploy (register or replace), patch and
//! delete agents.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;
use thetazero_api::types::{AgentView, PatchAgentRequest, RegisterAgentRequest};

use super::{exit, fail, read_json, read_text, Connection, Out};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the account's agents.
    List {
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Show one agent, its code included.
    Show { id: i64 },
    /// Deploy an agent from a JavaScript file: registers it, or replaces the
    /// agent of the same name.
    Deploy {
        /// The agent's code (`-`: standard input).
        file: PathBuf,
        /// The agent's name (default: the file's name without extension).
        #[arg(long)]
        name: Option<String>,
        /// A JSON file with the agent's config (template, limits...).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Permissions: a preset name (e.g. CODER) or a JSON list of scopes.
        #[arg(long)]
        permissions: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// `ready` (default) or `disabled`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Change an agent: only the fields given change.
    Patch {
        id: i64,
        /// New code from a JavaScript file (`-`: standard input).
        #[arg(long)]
        code: Option<PathBuf>,
        /// A JSON file with the new config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A preset name or a JSON list of scopes.
        #[arg(long)]
        permissions: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// `ready` or `disabled` (a killed agent: `thetazero revive`).
        #[arg(long)]
        status: Option<String>,
    },
    /// Delete an agent.
    Delete { id: i64 },
}

fn permissions(raw: Option<String>) -> Option<Value> {
    raw.map(|p| serde_json::from_str(&p).unwrap_or(Value::String(p)))
}

pub fn print_agent(a: &AgentView) {
    println!("id:          {}", a.id);
    println!("name:        {}", a.name);
    println!("version:     {}", a.version);
    println!("status:      {}", a.status);
    println!("description: {}", a.description);
    println!("code sha256: {}", a.code_sha256);
    println!("created:     {}", a.created_at);
    println!("updated:     {}", a.updated_at);
    println!("permissions: {}", a.permissions);
    println!("config:      {}", a.config);
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    let client = conn.client()?;
    match command {
        Command::List { page, limit } => {
            let list = client.list_agents(page, limit).await?;
            out.print(&list, || {
                println!(
                    "{:<6} {:<32} {:<10} {:<10} UPDATED",
                    "ID", "NAME", "VERSION", "STATUS"
                );
                for a in &list.agents {
                    println!(
                        "{:<6} {:<32} {:<10} {:<10} {}",
                        a.id, a.name, a.version, a.status, a.updated_at
                    );
                }
                println!(
                    "{} of {} agents (page {})",
                    list.agents.len(),
                    list.total,
                    list.page
                );
            })?;
        }
        Command::Show { id } => {
            let agent = client.get_agent(id).await?;
            out.print(&agent, || {
                print_agent(&agent.agent);
                println!("--- code ---\n{}", agent.agent.entry_code);
            })?;
        }
        Command::Deploy {
            file,
            name,
            config,
            permissions: perms,
            description,
            version,
            status,
        } => {
            let code = read_text(&file)?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .filter(|s| *s != "-")
                    .map(str::to_string)
                    .ok_or_else(|| {
                        fail(
                            exit::USAGE,
                            "name the agent with --name when reading standard input",
                        )
                    })?,
            };
            let req = RegisterAgentRequest {
                name,
                version,
                entry_code: code,
                description,
                status,
                config: config.as_deref().map(read_json).transpose()?,
                permissions: permissions(perms),
                compliance: None,
            };
            let agent = client.register_agent(&req).await?;
            out.print(&agent, || {
                println!(
                    "deployed agent {} ({}) version {}, status {}, code sha256 {}",
                    agent.agent.id,
                    agent.agent.name,
                    agent.agent.version,
                    agent.agent.status,
                    agent.agent.code_sha256
                )
            })?;
        }
        Command::Patch {
            id,
            code,
            config,
            permissions: perms,
            description,
            version,
            status,
        } => {
            let patch = PatchAgentRequest {
                version,
                description,
                status,
                entry_code: code.as_deref().map(read_text).transpose()?,
                config: config.as_deref().map(read_json).transpose()?,
                permissions: permissions(perms),
            };
            let agent = client.update_agent(id, &patch).await?;
            out.print(&agent, || {
                println!(
                    "updated agent {} ({}) version {}, status {}",
                    agent.agent.id, agent.agent.name, agent.agent.version, agent.agent.status
                )
            })?;
        }
        Command::Delete { id } => {
            let done = client.delete_agent(id).await?;
            out.print(&done, || println!("deleted agent {id}"))?;
        }
    }
    Ok(())
}
