//! `wharf config from-registry FILE`: prints the `wharf.toml` equivalent to a
//! registry:2 `config.yml` (with the `REGISTRY_*` overrides of this
//! environment). Offline; exit 1 with a clear error on a missing or bad file.

use std::path::Path;
use std::process::ExitCode;

/// Reads `file`, converts it, prints the result on stdout.
pub(super) fn from_registry(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match crate::migrate_config::from_registry(&text, &file.display().to_string(), std::env::vars())
    {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
