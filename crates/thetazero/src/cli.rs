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
    fn client(&self) -> Result<Client> {
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
