//! The `wharf` command line: argument types (parsed by `main.rs`) and the
//! dispatch to one file per command group. The admin commands (`ls`, `du`,
//! `rm`, `gc`, `verify`, `backup`, `pin`, `unpin`, `status`, `sync`, `replicate`, `import`) are clients of the running
//! daemon's admin API (`/_wharf/v1/`): redb allows one process per index.

mod backup;
mod client;
mod format;
mod from_registry;
mod housekeeping;
mod import;
mod pins;
mod progress;
mod replicate;
mod repos;
mod serve;
mod status;
mod sync;
mod usage;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::AdminArgs;

/// wharf: a LAN container registry — pull-through mirror and private registry.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, long_version = crate::build_info::LONG_VERSION, about)]
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
    /// Configuration tools (offline).
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users in an htpasswd file.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List repositories, or one repository's tags.
    Ls {
        /// A repository as clients write it (`nginx`, `team/app`).
        repo: Option<String>,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Disk usage: total, pushed, cached (by upstream), against the cache budget.
    Du {
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a tag (`team/app:1`) or a manifest (`team/app@sha256:...`).
    Rm {
        /// The reference.
        reference: String,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Collect unreferenced blobs now; prints what went (or would go).
    Gc {
        /// Report what would go without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-hash every blob; corrupt ones are quarantined and listed.
    Verify {
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// An online, consistent copy of the data directory (index snapshot and
    /// the blobs it names) into DEST, which must be absent or empty; restore
    /// with `wharf serve` and `[storage] root = DEST`.
    Backup {
        /// The backup directory, a path on the daemon's host (a relative one
        /// is taken from the current directory).
        dest: PathBuf,
        /// Copy every blob even where DEST shares the data directory's
        /// filesystem (hard links share the disk blocks: a copy survives the disk).
        #[arg(long)]
        copy: bool,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Pin an image so it is never evicted; without REF, list the pins.
    Pin {
        /// The image as clients write it (`docker.io/library/nginx:1.27`).
        reference: Option<String>,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a pin.
    Unpin {
        /// The pinned reference.
        reference: String,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The `[[sync]]` rules and their last passes; `--now` runs them all now.
    Sync {
        /// Run every rule now and print what the pass did.
        #[arg(long)]
        now: bool,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Import a registry:2 storage root (its `docker/registry/v2/` tree) into
    /// the running daemon: every blob verified, tags and digests kept,
    /// repositories hosted; idempotent. DIR is read by the daemon.
    Import {
        /// The storage root (`rootdirectory` of registry:2, e.g. /var/lib/registry).
        dir: PathBuf,
        /// Hard-link blob files into the store when on the same filesystem
        /// (verified all the same); copied otherwise.
        #[arg(long)]
        link: bool,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Every worker: last run, next run, result, what it did.
    Status {
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replication targets: queue length, last success and last error of
    /// each `[[replicate]]` rule.
    Replicate {
        /// Run a pass now (both sides compared) and print what it did first.
        #[arg(long)]
        now: bool,
        /// Daemon and output options.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `wharf config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the wharf.toml equivalent to a registry:2 config.yml (with the
    /// REGISTRY_* environment overrides applied); unmappable keys are listed
    /// with the reason. Offline: no daemon needed.
    FromRegistry {
        /// The registry:2 configuration (`/etc/docker/registry/config.yml`).
        file: PathBuf,
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

/// Runs a parsed command line; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    let admin = |args: &AdminArgs, f: &dyn Fn(&client::Client) -> Result<(), client::CliError>| {
        client::Client::new(args)
            .and_then(|c| f(&c))
            .map(|()| ExitCode::SUCCESS)
            .unwrap_or_else(|e| {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            })
    };
    match cli.command {
        Command::Serve { config } => serve::serve(config),
        Command::CheckConfig { config } => serve::check_config(&config),
        Command::Config {
            command: ConfigCommand::FromRegistry { file },
        } => from_registry::from_registry(&file),
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    htpasswd,
                    password_stdin,
                    cost,
                },
        } => user::add(&name, &htpasswd, password_stdin, cost),
        Command::Ls { repo, admin: a } => admin(&a, &|c| repos::ls(c, repo.as_deref())),
        Command::Du { admin: a } => admin(&a, &usage::du),
        Command::Rm {
            reference,
            admin: a,
        } => admin(&a, &|c| repos::rm(c, &reference)),
        Command::Gc { dry_run, admin: a } => admin(&a, &|c| housekeeping::gc(c, dry_run)),
        Command::Verify { admin: a } => admin(&a, &housekeeping::verify),
        Command::Backup {
            dest,
            copy,
            admin: a,
        } => admin(&a, &|c| backup::backup(c, &dest, copy)),
        Command::Pin {
            reference,
            admin: a,
        } => admin(&a, &|c| pins::pin(c, reference.as_deref())),
        Command::Unpin {
            reference,
            admin: a,
        } => admin(&a, &|c| pins::unpin(c, &reference)),
        Command::Status { admin: a } => admin(&a, &status::status),
        Command::Import {
            dir,
            link,
            admin: a,
        } => admin(&a, &|c| import::import(c, &dir, link)),
        Command::Replicate { now, admin: a } => admin(&a, &|c| replicate::replicate(c, now)),
        Command::Sync { now, admin: a } => admin(&a, &|c| sync::sync(c, now)),
    }
}
