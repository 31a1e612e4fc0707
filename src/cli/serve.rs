//! `wharf serve` and `wharf check-config`: the daemon's own commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, LogFormat};

/// Installs logging as `[log]` says; the guard flushes buffered lines when
/// dropped.
fn init_logging(config: &Config) -> Option<crate::logging::SinkGuard> {
    let format = match config.log.format {
        LogFormat::Json => crate::logging::Format::Json,
        LogFormat::Text => crate::logging::Format::Text,
    };
    crate::logging::init(&config.log.level, format)
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
    let logs = init_logging(&config);
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
    let result = runtime.block_on(crate::app::serve(config, config_path));
    if let Err(e) = &result {
        tracing::error!(error = %e, "wharf failed");
    }
    // The last buffered lines go out before anything printed directly.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
