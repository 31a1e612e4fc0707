//! `wharf serve` and `wharf check-config`: the daemon's own commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, LogFormat};

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

/// `wharf check-config --config PATH`: exit 0, or 2 with the error.
pub(super) fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(_) => {
            eprintln!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `wharf serve [--config PATH]`: runs the daemon until SIGTERM or SIGINT.
pub(super) fn serve(config: Option<PathBuf>) -> ExitCode {
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
