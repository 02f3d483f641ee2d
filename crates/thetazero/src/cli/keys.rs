//! `thetazero keys`: create, list, show and revoke API keys through a running
//! server; `recover` mints a new owner key from the server's own machine.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use thetazero_api::types::KeyView;
use thetazero_core::model::AccountId;

use super::{exit, fail, Connection, Out, StoreArgs};
use crate::admin;

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Show one key.
    Show { id: i64 },
    /// Replace a key's scopes (within those the calling key holds). The
    /// account's last live key that can manage keys keeps the keys scope.
    Scopes {
        id: i64,
        /// A scope the key keeps or gets; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Revoke a key by id. The account's last live key that can manage keys
    /// (an owner key, or one with the keys scope) is never revoked.
    Revoke { id: i64 },
    /// Mint a new owner key for an account, on the server's machine: through
    /// the running server's admin socket in the data directory, or, when no
    /// server holds the store, by opening it directly. Prints the secret once.
    Recover {
        /// The account that gets the key.
        #[arg(long)]
        account: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn scopes(k: &KeyView) -> String {
    if k.is_owner {
        "owner (all)".to_string()
    } else {
        k.scopes.join(" ")
    }
}

fn print_key(k: &KeyView) {
    println!("id:         {}", k.id);
    println!("name:       {}", k.name);
    println!("prefix:     {}", k.prefix);
    println!("scopes:     {}", scopes(k));
    println!("created:    {}", k.created_at);
    println!(
        "last used:  {}",
        k.last_used_at.as_deref().unwrap_or("never")
    );
    println!("revoked:    {}", k.revoked_at.as_deref().unwrap_or("no"));
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    if let Command::Recover { account, store } = command {
        return recover(out, account, store).await;
    }
    let client = conn.client()?;
    match command {
        Command::Create { name, scopes } => {
            let created = client.create_key(&name, &scopes).await?;
            out.print(&created, || {
                println!(
                    "created key {} ({}) with scopes {}",
                    created.key.id,
                    created.key.name,
                    created.key.scopes.join(" ")
                );
                println!("secret (shown once): {}", created.secret);
            })?;
        }
        Command::List => {
            let list = client.list_keys().await?;
            out.print(&list, || {
                println!(
                    "{:<6} {:<24} {:<14} {:<9} {:<22} SCOPES",
                    "ID", "NAME", "PREFIX", "STATE", "LAST USED"
                );
                for k in &list.keys {
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
                        scopes(k)
                    );
                }
            })?;
        }
        Command::Show { id } => {
            let key = client.get_key(id).await?;
            out.print(&key, || print_key(&key.key))?;
        }
        Command::Scopes { id, scopes: wanted } => {
            let key = client.set_key_scopes(id, &wanted).await?;
            out.print(&key, || {
                println!(
                    "key {} ({}) now has scopes {}",
                    key.key.id,
                    key.key.name,
                    scopes(&key.key)
                )
            })?;
        }
        Command::Revoke { id } => {
            let key = client.revoke_key(id).await?;
            out.print(&key, || {
                println!("revoked key {} ({})", key.key.id, key.key.name)
            })?;
        }
        Command::Recover { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn recover(out: Out, account: i64, store: StoreArgs) -> Result<()> {
    let account = AccountId::new(account);
    let config = store.resolve()?;
    let socket = admin::socket_path(&config.data_dir);
    let (key_id, prefix, secret, via) = match admin::ask(
        &socket,
        &admin::Request::RecoverKey {
            account_id: account,
        },
    )
    .await?
    {
        Some(answer) if answer.ok => (
            answer.key_id.unwrap_or_default(),
            answer.prefix.unwrap_or_default(),
            answer.secret.unwrap_or_default(),
            "server",
        ),
        Some(answer) => {
            let code = answer.code.unwrap_or_default();
            let message = answer.message.unwrap_or_default();
            return Err(fail(
                match code.as_str() {
                    "not_found" => exit::NOT_FOUND,
                    "forbidden" => exit::DENIED,
                    _ => exit::ERROR,
                },
                format!("the server refused: {code}: {message}"),
            ));
        }
        None => {
            // No server answers: hold the store's lock while working on it,
            // so that a server cannot start on it meanwhile.
            let _lock = match admin::sqlite_path(&config.database_url) {
                Some(db) => Some(admin::try_lock_store(&db)?.ok_or_else(|| {
                    fail(
                        exit::CONFLICT,
                        format!(
                            "a process holds the database {} but no server answers on {}; stop it, or retry once it has started",
                            db.display(),
                            socket.display()
                        ),
                    )
                })?),
                None => None,
            };
            let (store, ledger) = crate::serve::open_offline(&config).await?;
            let (key, secret) = admin::recover_owner_key(store.as_ref(), account, "offline")
                .await
                .map_err(|e| match e {
                    admin::RecoverError::NoAccount(id) => {
                        fail(exit::NOT_FOUND, format!("no account {id}"))
                    }
                    other => anyhow::Error::new(other),
                })?;
            // Sign a checkpoint covering the new event, as the server would.
            ledger
                .checkpoint_all()
                .await
                .map_err(|e| anyhow::anyhow!("signing checkpoints: {e}"))?;
            (key.id.get(), key.prefix, secret, "offline")
        }
    };
    let answer = json!({
        "account_id": account,
        "key_id": key_id,
        "prefix": prefix,
        "secret": secret,
        "via": via,
    });
    out.print(&answer, || {
        println!(
            "recovered owner key {key_id} ({prefix}) for account {account} ({})",
            if via == "server" {
                "through the running server"
            } else {
                "offline"
            }
        );
        println!("secret (shown once): {secret}");
    })
}
