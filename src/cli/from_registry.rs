//! `wharf config from-registry FILE`: prints the `wharf.toml` equivalent to a
//! registry:2 `config.yml` (with the `REGISTRY_*` overrides of this
//! environment). Offline; exit 1 with a clear error on a missing or bad file.

use std::path::Path;
use std::process::ExitCode;

/// Reads `file`, converts it, prints the result on stdout.
pub(super) fn from_registry(file: &Path) -> ExitCode {
    let text = match read_bounded(file) {
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

/// Reads `file` as UTF-8 text, refusing one larger than a configuration can
/// be (checked before and while reading: it is never read whole).
fn read_bounded(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let max = crate::migrate_config::MAX_CONFIG_BYTES;
    let f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    let too_big = |n: u64| {
        std::io::Error::other(format!(
            "{n} bytes or more; a registry config.yml is at most {max} bytes"
        ))
    };
    if len > max {
        return Err(too_big(len));
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(max + 1));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        )
    })
}
