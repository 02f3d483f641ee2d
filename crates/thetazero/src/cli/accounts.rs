//! `thetazero accounts`: create accounts (the deployment owner only).

use anyhow::Result;
use clap::Subcommand;

use super::{Connection, Out};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account; prints its owner key once.
    Create {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(conn: Connection, out: Out, command: Command) -> Result<()> {
    let client = conn.client()?;
    match command {
        Command::Create { name } => {
            let created = client.create_account(&name).await?;
            out.print(&created, || {
                println!(
                    "created account {} ({})",
                    created.account.id, created.account.name
                );
                println!("owner API key: {}", created.secret);
            })?;
        }
    }
    Ok(())
}
