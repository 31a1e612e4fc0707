//! `wharf user add`: writes a bcrypt htpasswd line, compatible with `htpasswd -B`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a user could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A name htpasswd cannot hold.
    #[error("invalid user name {0:?}: use letters, digits, '.', '_', '-' and '@'")]
    BadName(String),
    /// Empty or mismatched password.
    #[error("{0}")]
    Password(String),
    /// bcrypt refused (bad cost).
    #[error("cannot hash the password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The existing file has lines wharf would refuse.
    #[error(transparent)]
    Htpasswd(#[from] crate::auth::htpasswd::HtpasswdError),
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn set_echo(on: bool) {
    // Best effort: without a terminal there is no echo to hide.
    let _ = Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(
            std::fs::File::open("/dev/tty")
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .status();
}

/// Reads one line from standard input without echo (a password typed at a terminal).
pub(crate) fn prompt(label: &str) -> Result<String, UserError> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    set_echo(false);
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    set_echo(true);
    eprintln!();
    r.map_err(|source| UserError::Io {
        path: "stdin".into(),
        source,
    })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn read_password(from_stdin: bool) -> Result<String, UserError> {
    let pw = if from_stdin || !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| UserError::Io {
                path: "stdin".into(),
                source,
            })?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let a = prompt("Password: ")?;
        let b = prompt("Repeat password: ")?;
        if a != b {
            return Err(UserError::Password("passwords do not match".into()));
        }
        a
    };
    if pw.is_empty() {
        return Err(UserError::Password("the password is empty".into()));
    }
    Ok(pw)
}

/// Adds or updates `name` in the htpasswd file at `path`, atomically.
pub fn add(name: &str, path: &Path, password_stdin: bool, cost: u32) -> Result<(), UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName(name.to_owned()));
    }
    let io = |source| UserError::Io {
        path: path.display().to_string(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    crate::auth::htpasswd::parse(&existing, &path.display().to_string())?;
    let password = read_password(password_stdin)?;
    let hash = bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoY);
    let text = crate::auth::htpasswd::upsert(&existing, name, &hash);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("htpasswd")
    ));
    std::fs::write(&tmp, text).map_err(io)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions())
        .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
    std::fs::set_permissions(&tmp, mode).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
