//! Reading a `registry:2` filesystem storage root (`docker/registry/v2/`)
//! without trusting it: every step below the root is checked with `lstat`
//! (a symlink is reported, never followed, so nothing outside the tree is
//! read), link files are read only when small (a digest is 71 bytes), names
//! that are not valid repository names or tags are reported, and nothing is
//! ever opened for writing. All of it is blocking file work: callers run it
//! on blocking threads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::oci::{Digest, RepoName, Tag};

/// Largest link file read (a `sha256:` digest is 71 bytes; some tools add a newline).
const MAX_LINK_BYTES: u64 = 256;
/// Deepest repository name walked (components of a name).
const MAX_DEPTH: usize = 32;

/// A `registry:2` storage root, opened read-only.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `.../docker/registry/v2`.
    root: PathBuf,
}

/// One repository of the tree.
#[derive(Debug, Clone)]
pub struct RepoDir {
    /// Its name.
    pub name: RepoName,
    /// Tags with the digest each `current/link` names, sorted by tag.
    pub tags: Vec<(String, Digest)>,
    /// Manifest revisions it holds (`_manifests/revisions`).
    pub revisions: BTreeSet<Digest>,
    /// Blobs linked into it (`_layers`): all registry:2 serves through it.
    pub layers: BTreeSet<Digest>,
}

/// Something in the tree that was not imported, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// What it is (a path relative to the root, `repo:tag`, a digest).
    pub what: String,
    /// Why.
    pub reason: String,
}

fn skipped(what: impl Into<String>, reason: impl Into<String>) -> Skipped {
    Skipped {
        what: what.into(),
        reason: reason.into(),
    }
}

/// What a step found at a path, without following a symlink.
enum Entry {
    Dir,
    File(u64),
    Missing,
    Other(&'static str),
}

fn entry(path: &Path) -> Entry {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Entry::Other("a symlink (not followed)"),
        Ok(m) if m.is_dir() => Entry::Dir,
        Ok(m) if m.is_file() => Entry::File(m.len()),
        Ok(_) => Entry::Other("not a regular file or directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entry::Missing,
        Err(_) => Entry::Other("unreadable"),
    }
}

/// Names in a directory, sorted. A directory that cannot be listed, an entry
/// that cannot be read and a name that is not UTF-8 are reported in `skips`
/// (`rel` names the directory), never taken as absent.
fn names(dir: &Path, rel: &str, skips: &mut Vec<Skipped>) -> Vec<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skips.push(skipped(rel, format!("unreadable directory: {e}")));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in entries {
        match e {
            Ok(e) => match e.file_name().into_string() {
                Ok(name) => out.push(name),
                Err(raw) => skips.push(skipped(
                    format!("{rel}/{}", raw.to_string_lossy()),
                    "a name that is not UTF-8 (not a repository, tag or digest)",
                )),
            },
            Err(e) => skips.push(skipped(rel, format!("unreadable directory entry: {e}"))),
        }
    }
    out.sort();
    out
}

impl Tree {
    /// Opens `dir`: a storage root (`rootdirectory`, holding `docker/registry/v2`)
    /// or the `v2` directory itself. `dir` itself may be a symlink; nothing
    /// below it may.
    pub fn open(dir: &Path) -> Result<Tree, String> {
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let is_root = |root: &Path| {
            matches!(entry(&root.join("repositories")), Entry::Dir)
                && matches!(entry(&root.join("blobs")), Entry::Dir)
        };
        let mut nested = dir.clone();
        let mut steps_ok = true;
        for c in ["docker", "registry", "v2"] {
            nested.push(c);
            steps_ok &= matches!(entry(&nested), Entry::Dir);
        }
        if steps_ok && is_root(&nested) {
            return Ok(Tree { root: nested });
        }
        if is_root(&dir) {
            return Ok(Tree { root: dir });
        }
        Err(format!(
            "{} is not a registry:2 storage root: no docker/registry/v2/ with repositories/ and \
             blobs/ in it (give the storage rootdirectory, e.g. /var/lib/registry)",
            dir.display()
        ))
    }

    /// The root, for messages.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every repository under `repositories/` (a directory holding
    /// `_manifests`), with what could not be read reported.
    pub fn repositories(&self) -> (Vec<RepoDir>, Vec<Skipped>) {
        let mut repos = Vec::new();
        let mut skips = Vec::new();
        let base = self.root.join("repositories");
        let mut stack: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(parts) = stack.pop() {
            let dir = parts.iter().fold(base.clone(), |p, c| p.join(c));
            let rel = ["repositories".to_owned()]
                .into_iter()
                .chain(parts.iter().cloned())
                .collect::<Vec<_>>()
                .join("/");
            if parts.len() > MAX_DEPTH {
                skips.push(skipped(rel, "nested deeper than any repository name"));
                continue;
            }
            let children = names(&dir, &rel, &mut skips);
            if !parts.is_empty() && children.iter().any(|c| c == "_manifests") {
                let name = parts.join("/");
                match name.parse::<RepoName>() {
                    Ok(name) => repos.push(self.repository(&dir, name, &mut skips)),
                    Err(e) => skips.push(skipped(rel.clone(), e.to_string())),
                }
            }
            for c in children.into_iter().rev() {
                if c.starts_with('_') {
                    continue;
                }
                let path = dir.join(&c);
                match entry(&path) {
                    Entry::Dir => {
                        let mut next = parts.clone();
                        next.push(c);
                        stack.push(next);
                    }
                    Entry::Other(why) => skips.push(skipped(format!("{rel}/{c}"), why)),
                    Entry::File(_) | Entry::Missing => {}
                }
            }
        }
        repos.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        (repos, skips)
    }

    fn repository(&self, dir: &Path, name: RepoName, skips: &mut Vec<Skipped>) -> RepoDir {
        let rel = |p: &Path| {
            p.strip_prefix(&self.root)
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let mut repo = RepoDir {
            name,
            tags: Vec::new(),
            revisions: BTreeSet::new(),
            layers: BTreeSet::new(),
        };
        let manifests = dir.join("_manifests");
        let tags = manifests.join("tags");
        if matches!(entry(&manifests), Entry::Dir) && matches!(entry(&tags), Entry::Dir) {
            for t in names(&tags, &rel(&tags), skips) {
                let link = tags.join(&t).join("current").join("link");
                if t.parse::<Tag>().is_err() {
                    skips.push(skipped(rel(&tags.join(&t)), "not a valid tag name"));
                    continue;
                }
                match read_link(&tags.join(&t), &["current", "link"]) {
                    Ok(Some(d)) => repo.tags.push((t, d)),
                    // A tag directory without `current/link` is a deleted tag.
                    Ok(None) => {}
                    Err(why) => skips.push(skipped(rel(&link), why)),
                }
            }
        }
        for (sub, set) in [
            (
                manifests.join("revisions").join("sha256"),
                &mut repo.revisions,
            ),
            (dir.join("_layers").join("sha256"), &mut repo.layers),
        ] {
            if !matches!(entry(&sub), Entry::Dir) {
                continue;
            }
            for hex in names(&sub, &rel(&sub), skips) {
                match read_link(&sub.join(&hex), &["link"]) {
                    Ok(Some(d)) if d.hex() == hex => {
                        set.insert(d);
                    }
                    Ok(None) => {}
                    Ok(Some(d)) => skips.push(skipped(
                        rel(&sub.join(&hex).join("link")),
                        format!("names {d}, not the digest of its directory"),
                    )),
                    Err(why) => skips.push(skipped(rel(&sub.join(&hex).join("link")), why)),
                }
            }
        }
        repo
    }

    /// The `data` file of `digest`, checked: every step a directory (no
    /// symlink), the file a regular file. `Err` says what is wrong (missing,
    /// a symlink, ...).
    pub fn blob(&self, digest: &Digest) -> Result<(PathBuf, u64), String> {
        let hex = digest.hex();
        let mut p = self.root.join("blobs");
        for c in ["sha256", &hex[..2], hex] {
            p.push(c);
            match entry(&p) {
                Entry::Dir => {}
                Entry::Missing => return Err("missing from blobs/".into()),
                Entry::File(_) => return Err(format!("{} is not a directory", self.rel(&p))),
                Entry::Other(why) => return Err(format!("{} is {why}", self.rel(&p))),
            }
        }
        p.push("data");
        match entry(&p) {
            Entry::File(size) => Ok((p, size)),
            Entry::Missing => Err("missing from blobs/ (no data file)".into()),
            Entry::Dir => Err(format!("{} is a directory", self.rel(&p))),
            Entry::Other(why) => Err(format!("{} is {why}", self.rel(&p))),
        }
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }
}

/// Reads the link file at `dir/<steps...>` without following symlinks:
/// `Ok(None)` when a step is missing (a deleted tag), `Err` for a symlink,
/// an oversized file or one that does not hold a digest.
fn read_link(dir: &Path, steps: &[&str]) -> Result<Option<Digest>, String> {
    let mut p = dir.to_path_buf();
    match entry(&p) {
        Entry::Dir => {}
        Entry::Missing => return Ok(None),
        Entry::File(_) => return Err("not a directory".into()),
        Entry::Other(why) => return Err(why.into()),
    }
    for (i, s) in steps.iter().enumerate() {
        p.push(s);
        let last = i + 1 == steps.len();
        match entry(&p) {
            Entry::Missing => return Ok(None),
            Entry::Dir if !last => {}
            Entry::File(n) if last && n > MAX_LINK_BYTES => {
                return Err(format!("link file is {n} bytes, not a digest"));
            }
            Entry::File(_) if last => {}
            Entry::Other(why) => return Err(why.into()),
            Entry::Dir | Entry::File(_) => return Err("unexpected file type".into()),
        }
    }
    let bytes = read_small(&p).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "link file is not text".to_owned())?;
    text.trim()
        .parse::<Digest>()
        .map(Some)
        .map_err(|e| format!("link file does not hold a digest: {e}"))
}

/// Reads at most [`MAX_LINK_BYTES`] of a file opened without following a
/// symlink (it may have been swapped since it was checked).
fn read_small(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(p)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    file.take(MAX_LINK_BYTES).read_to_end(&mut out)?;
    Ok(out)
}

/// What reading a tag's or index child's manifest from the tree found.
pub enum ManifestRead {
    /// Its bytes, verified against the digest.
    Bytes(Vec<u8>),
    /// The blob itself is bad (missing, a symlink, unreadable, corrupt): every
    /// use of it is broken.
    BadBlob(String),
    /// The blob may be fine (a large layer, say) but is no manifest: only what
    /// names it as a manifest is broken.
    NotAManifest(String),
}

impl Tree {
    /// Reads the manifest `digest` (at most `limit` bytes) and checks its digest.
    pub fn manifest(&self, digest: &Digest, limit: u64) -> ManifestRead {
        let (path, size) = match self.blob(digest) {
            Ok(found) => found,
            Err(why) => return ManifestRead::BadBlob(why),
        };
        if size > limit {
            return ManifestRead::NotAManifest(format!(
                "{digest} is {size} bytes, more than a manifest may have ({limit}): not a manifest"
            ));
        }
        let bytes = match read_manifest(&path, limit) {
            Ok(b) => b,
            Err(e) => return ManifestRead::BadBlob(format!("unreadable: {e}")),
        };
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return ManifestRead::BadBlob(format!("corrupt: its bytes hash to {actual}"));
        }
        ManifestRead::Bytes(bytes)
    }
}

/// Reads a manifest's `data` file whole (at most `limit` bytes, checked
/// before and while reading), without following a symlink.
pub fn read_manifest(p: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(p)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than a manifest may have ({limit})",
            meta.len()
        )));
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    Ok(out)
}
