//! `<root>/lost+found/`: where start-up puts files it found under `blobs/` but
//! cannot account for (content without index rows, stray names). They are moved,
//! never deleted: a wrong guess about which side is right must stay reversible.

use std::path::{Path, PathBuf};

/// Attempts at a free name before giving up (`name`, `name.1`, … `name.999`).
const MAX_SUFFIX: usize = 1000;

/// The `lost+found` directory of `root`.
pub(in crate::store) fn dir(root: &Path) -> PathBuf {
    root.join("lost+found")
}

/// Moves `src` into `<root>/lost+found/` as `name` (or `name.N` when taken) and
/// returns where it went. A rename when possible; across filesystems (a
/// `blobs/` on its own volume) a file is copied, fsynced and only then removed.
pub(in crate::store::content) fn move_in(
    root: &Path,
    src: &Path,
    name: &str,
) -> std::io::Result<PathBuf> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir)?;
    let dest = free_name(&dir, name)?;
    match std::fs::rename(src, &dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices && src.is_file() => {
            std::fs::copy(src, &dest)?;
            std::fs::File::open(&dest)?.sync_all()?;
            std::fs::remove_file(src)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(dest)
}

fn free_name(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    for n in 0..MAX_SUFFIX {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{name}.{n}"))
        };
        if std::fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free name for {name} in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_keep_bytes_and_never_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        std::fs::write(&a, b"first").unwrap();
        std::fs::write(&b, b"second").unwrap();
        let da = move_in(root.path(), &a, "x").unwrap();
        let db = move_in(root.path(), &b, "x").unwrap();
        assert_ne!(da, db);
        assert!(!a.exists() && !b.exists());
        assert_eq!(std::fs::read(da).unwrap(), b"first");
        assert_eq!(std::fs::read(db).unwrap(), b"second");
    }
}
