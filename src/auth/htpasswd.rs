//! htpasswd files as `htpasswd -B` and `wharf user add` write them: one
//! `name:$2y$...` bcrypt line per user. Other hash kinds (MD5 `$apr1$`, SHA1
//! `{SHA}`, crypt) are refused, naming the line, rather than silently accepted.

use std::collections::HashMap;
use std::path::Path;

/// Why an htpasswd file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}{hint}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
        /// What to do about it, when that is plain (a missing file: the
        /// command that creates it), with its leading separator; or empty.
        hint: String,
    },
    /// A line that is not `name:bcrypt-hash`.
    #[error("{path} line {line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The bcrypt cost `wharf user add` writes by default (and the cost of the
/// dummy hash unknown users are checked against while the file is empty).
pub const DEFAULT_COST: u32 = 10;

/// True for the bcrypt prefixes `htpasswd -B` and other tools write.
pub fn is_bcrypt(hash: &str) -> bool {
    ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60
}

/// Parses htpasswd text; `path` only labels errors.
pub fn parse(text: &str, path: &str) -> Result<HashMap<String, String>, HtpasswdError> {
    let mut users = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| HtpasswdError::Line {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let (name, hash) = line
            .split_once(':')
            .ok_or_else(|| err("expected name:hash".into()))?;
        if name.is_empty() {
            return Err(err("empty user name".into()));
        }
        if !is_bcrypt(hash) {
            return Err(err(format!(
                "user {name:?} has a non-bcrypt hash; only bcrypt ($2y$/$2a$/$2b$, `htpasswd -B`) is accepted"
            )));
        }
        users.insert(name.to_owned(), hash.to_owned());
    }
    Ok(users)
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<HashMap<String, String>, HtpasswdError> {
    let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
        path: path.display().to_string(),
        hint: if source.kind() == std::io::ErrorKind::NotFound {
            format!(
                "; create it with `wharf user add NAME --htpasswd {}`",
                path.display()
            )
        } else {
            String::new()
        },
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Returns `text` with `name`'s line set to `hash` (replaced in place, or appended).
pub fn upsert(text: &str, name: &str, hash: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        if line.split_once(':').map(|(n, _)| n) == Some(name) {
            if !done {
                out.push_str(&format!("{name}:{hash}\n"));
                done = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("{name}:{hash}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "$2y$05$2ubdC3d0IZ5gnB6XxONOkOG7Hj4BNA0QeVUf9kO2DdWigwYjNp9eK";

    #[test]
    fn parses_bcrypt_and_refuses_others() {
        let u = parse(
            &format!("# users\n\nalice:{H}\nbob:{}\n", H.replace("$2y$", "$2b$")),
            "f",
        )
        .unwrap();
        assert_eq!(u.len(), 2);
        let e = parse(&format!("alice:{H}\nmallory:$apr1$abc$def\n"), "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("mallory") && e.contains("bcrypt"),
            "{e}"
        );
        assert!(parse("nocolon\n", "f").is_err());
        assert!(parse("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "f").is_err());
    }

    #[test]
    fn upsert_replaces_or_appends() {
        let t = upsert("a:x\nb:y\n", "a", "z");
        assert_eq!(t, "a:z\nb:y\n");
        assert_eq!(upsert("a:x\n", "c", "w"), "a:x\nc:w\n");
        assert_eq!(upsert("", "c", "w"), "c:w\n");
    }
}
