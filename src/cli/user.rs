//! `wharf user add`: writes an htpasswd line (see [`crate::users`]).

use std::path::Path;
use std::process::ExitCode;

/// Adds or updates `name` in the htpasswd file at `htpasswd`.
pub(super) fn add(name: &str, htpasswd: &Path, password_stdin: bool, cost: u32) -> ExitCode {
    match crate::users::add(name, htpasswd, password_stdin, cost) {
        Ok(()) => {
            eprintln!("user {name} saved in {}", htpasswd.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
