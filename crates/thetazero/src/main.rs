//! The thetazero binary: `thetazero serve` runs the server; the other commands
//! are a command-line client of a running server. This is the only place that
//! chooses a storage backend.

mod cli;
mod health;
mod serve;
mod signing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "thetazero",
    version,
    about = "A self-hostable, governed runtime for AI agents"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create, list and revoke API keys of a running server.
    Keys {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::KeysCommand,
    },
    /// The verifiable audit log: verifier key, exports, offline verification.
    Audit {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::AuditCommand,
    },
    /// Measure content safety: scan JSON lines, or evaluate a labelled file.
    Safety {
        #[command(subcommand)]
        command: cli::SafetyCommand,
    },
    /// Create accounts (deployment owner only).
    Accounts {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::AccountsCommand,
    },
    /// Exit 0 when the server at --url answers /healthz (for container
    /// health checks).
    Healthcheck(health::HealthArgs),
    /// A sandbox worker process; the server starts these itself.
    #[command(hide = true)]
    SandboxWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // A worker confines itself before it starts any thread, so this comes
    // before the async runtime (whose threads would escape the filter).
    if let Command::SandboxWorker { args } = &args.command {
        let code = thetazero_runtime::sandbox::worker::main(args);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Serve(serve_args) => serve::run(serve_args).await,
            Command::Keys { conn, command } => cli::keys(conn, command).await,
            Command::Accounts { conn, command } => cli::accounts(conn, command).await,
            Command::Audit { conn, command } => cli::audit(conn, command).await,
            Command::Safety { command } => cli::safety(command),
            Command::Healthcheck(a) => health::check(a).await,
            Command::SandboxWorker { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<serve::Logged>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
