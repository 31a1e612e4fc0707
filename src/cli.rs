//! The `wharf` command line: argument types (parsed by `main.rs`) and what each
//! subcommand does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// wharf: a LAN container registry — pull-through mirror and private registry.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry daemon.
    Serve {
        /// Configuration file; without it, embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Parse and validate a configuration file, then exit.
    CheckConfig {
        /// The file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage users in an htpasswd file.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `wharf user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a new password for an existing one (bcrypt, `$2y$`,
    /// the same line `htpasswd -B` writes). A running wharf picks the change up.
    Add {
        /// The user name.
        name: String,
        /// The htpasswd file (created if missing).
        #[arg(long, default_value = "/etc/wharf/htpasswd")]
        htpasswd: PathBuf,
        /// Read the password from standard input (for scripts) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
        /// bcrypt cost (4-31); each step doubles the work of a login.
        #[arg(long, default_value_t = crate::auth::htpasswd::DEFAULT_COST)]
        cost: u32,
    },
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs a parsed command line; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                eprintln!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    htpasswd,
                    password_stdin,
                    cost,
                },
        } => match crate::users::add(&name, &htpasswd, password_stdin, cost) {
            Ok(()) => {
                eprintln!("user {name} saved in {}", htpasswd.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            let config_path = config.clone();
            let config = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::embedded_default(),
            };
            init_logging(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(crate::app::serve(config, config_path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "wharf failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
