//! The thetazero binary: `thetazero serve` runs the server; the other commands
//! are a command-line client of a running server, or work on the server's
//! files (`keys recover`, `backup`, `config check`). This is the only place
//! that chooses a storage backend.

mod admin;
mod cli;
mod compliance;
mod health;
mod serve;
mod signing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "thetazero",
    version,
    about = "A self-hostable, governed runtime for AI agents",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage or invalid request, 3 not found, \
4 unauthorized or forbidden, 5 conflict (killed, halted, last key), \
6 unavailable or rate-limited, 7 negative result (run not completed, bundle or config invalid)."
)]
struct Args {
    /// Print answers as JSON (one document per line) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Deploy, list, show, patch and delete agents.
    Agents {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::agents::Command,
    },
    /// Run an agent and print its result.
    Run {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(flatten)]
        args: cli::run::RunArgs,
    },
    /// An agent's executions.
    Executions {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::executions::Command,
    },
    /// Stop an agent: its runs end and new ones are refused until revived.
    Kill {
        #[command(flatten)]
        conn: cli::Connection,
        /// The agent.
        agent: i64,
        /// Why; recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Halt the caller's account or the whole deployment.
    Halt {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::killswitch::HaltCommand,
    },
    /// Bring back a killed agent, or clear a halt.
    Revive {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::killswitch::ReviveCommand,
    },
    /// Agents' permission requests: list, approve, deny, watch.
    Approvals {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::approvals::Command,
    },
    /// Follow the live audit stream.
    Stream {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(flatten)]
        args: cli::stream::StreamArgs,
    },
    /// Create, list, show and revoke API keys; recover an owner key.
    Keys {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::keys::Command,
    },
    /// Create accounts (deployment owner only).
    Accounts {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::accounts::Command,
    },
    /// The verifiable audit log: query, checkpoint, export, offline verification.
    Audit {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::audit::Command,
    },
    /// Measure content safety: scan JSON lines, or evaluate a labelled file.
    Safety {
        #[command(subcommand)]
        command: cli::safety::Command,
    },
    /// Check a configuration as `serve` reads it.
    Config {
        #[command(subcommand)]
        command: cli::config::Command,
    },
    /// Copy an SQLite deployment (database and signing key) while it serves.
    Backup(cli::backup::BackupArgs),
    /// Controls mapping and evidence: status, report, package, drill, verify.
    Compliance {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: compliance::ComplianceCommand,
    },
    /// Exit 0 when the server at --url answers /healthz (for container
    /// health checks).
    Healthcheck(health::HealthArgs),
    /// Print the OpenAPI 3.1 document the server serves at
    /// /api/v1/openapi.json (no server needed).
    Openapi,
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
        let screen = thetazero_runtime::worker_log_screen(args);
        let code = thetazero_runtime::sandbox::worker::main_with(args, screen);
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
    let out = cli::Out { json: args.json };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Serve(serve_args) => serve::run(serve_args).await,
            Command::Agents { conn, command } => cli::agents::run(conn, out, command).await,
            Command::Run { conn, args } => cli::run::run(conn, out, args).await,
            Command::Executions { conn, command } => cli::executions::run(conn, out, command).await,
            Command::Kill {
                conn,
                agent,
                reason,
            } => cli::killswitch::kill(conn, out, agent, reason).await,
            Command::Halt { conn, command } => cli::killswitch::halt(conn, out, command).await,
            Command::Revive { conn, command } => cli::killswitch::revive(conn, out, command).await,
            Command::Approvals { conn, command } => cli::approvals::run(conn, out, command).await,
            Command::Stream { conn, args } => cli::stream::run(conn, out, args).await,
            Command::Keys { conn, command } => cli::keys::run(conn, out, command).await,
            Command::Accounts { conn, command } => cli::accounts::run(conn, out, command).await,
            Command::Audit { conn, command } => cli::audit::run(conn, out, command).await,
            Command::Safety { command } => cli::safety::run(command),
            Command::Config { command } => cli::config::run(out, command),
            Command::Backup(args) => cli::backup::run(out, args),
            Command::Compliance { conn, command } => compliance::run(conn, command).await,
            Command::Healthcheck(a) => health::check(a).await,
            Command::Openapi => {
                println!("{:#}", thetazero_http::openapi());
                Ok(())
            }
            Command::SandboxWorker { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::from(cli::exit::OK),
        Err(e) if e.is::<serve::Logged>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(cli::exit_code(&e))
        }
    }
}
