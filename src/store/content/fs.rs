//! The filesystem backend: `blobs/sha256/ab/abcd…`, one immutable file per
//! digest. A staged file is renamed into place only after it was fsynced and
//! verified, and the directory entry is fsynced before the index may name it;
//! nothing half-written is ever at a `blobs/` path. Quarantined content goes
//! to `quarantine/sha256/<hex>`, start-up's leftovers to `lost+found/`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::layout::layout_path;
use super::{
    Adopted, BlobBackend, BlobReader, BoxFuture, Hashed, Pace, Pending, ReadAt, Scan, Staged,
    Stray, lost_found,
};
use crate::oci::{Digest, DigestHasher};
use crate::store::StoreError;

/// Bytes read and hashed per blocking step when re-hashing (the pace is
/// applied between steps).
const HASH_CHUNK: usize = 1 << 20;

/// Content files under a data directory.
#[derive(Debug, Clone)]
pub struct FsBackend {
    root: PathBuf,
    blobs: PathBuf,
}

/// A reader over an open file (stored content, or a staged file that grows).
pub(super) fn file_reader(file: File) -> BlobReader {
    BlobReader::new(FileAt(Arc::new(file)))
}

/// A reader over stored (verified, immutable) content, which can also be
/// sent to a socket without copying.
fn stored_reader(file: File) -> BlobReader {
    let file = Arc::new(file);
    BlobReader::new(FileAt(file.clone())).with_zero_copy(super::ZeroCopy::new(file))
}

/// Positioned reads of one open file on blocking threads.
struct FileAt(Arc<File>);

impl ReadAt for FileAt {
    fn read_at(&self, at: u64, len: usize) -> Pending {
        let file = self.0.clone();
        Pending::blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, at)?;
            Ok(Bytes::from(buf))
        })
    }
}

/// Runs blocking file work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await?
}

impl FsBackend {
    /// The content directories of the data directory `root`; nothing is
    /// touched on disk.
    pub fn new(root: &Path) -> FsBackend {
        FsBackend {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        layout_path(&self.blobs, digest)
    }

    fn prepare_now(&self, create: bool) -> Result<bool, StoreError> {
        if create {
            std::fs::create_dir_all(&self.blobs)?;
        }
        Ok(self.blobs.is_dir())
    }

    /// Every file under `blobs/sha256`, sorted into content files (a digest
    /// name in its fan-out directory) and strays (anything else). A fan-out
    /// directory may be a symlink (to another disk), as `blobs/` itself may;
    /// one that leads nowhere is content out of reach, which stops start-up
    /// rather than being set aside as a stray (its blobs' rows would be dropped).
    fn scan_now(&self) -> Result<Scan, StoreError> {
        let mut out = Scan::default();
        for fan in std::fs::read_dir(&self.blobs)? {
            let fan = fan?;
            let fan_name = fan.file_name();
            let fan_named = fan_name
                .to_str()
                .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()));
            let fan_ok = fan_named && fan.path().is_dir();
            if fan_named && !fan_ok && fan.file_type()?.is_symlink() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} is a symlink that does not lead to a directory: check that \
                         the volume it points to is mounted",
                        fan.path().display()
                    ),
                )
                .into());
            }
            if !fan_ok {
                out.strays.push(Stray(fan.path()));
                continue;
            }
            for f in std::fs::read_dir(fan.path())? {
                let f = f?;
                let name = f.file_name();
                let digest = name
                    .to_str()
                    .filter(|n| n.get(..2) == fan_name.to_str())
                    .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                    .filter(|_| f.path().is_file());
                match digest {
                    Some(d) => out.content.push(d),
                    None => out.strays.push(Stray(f.path())),
                }
            }
        }
        Ok(out)
    }

    /// Moves orphan content files and strays to `lost+found/`, logging how
    /// many went where. A file that cannot be moved stays where it is (logged).
    fn set_aside_now(&self, orphans: &[Digest], strays: &[Stray]) {
        let dir = lost_found::dir(&self.root);
        let mut moved = (0usize, 0usize);
        for d in orphans {
            let name = format!("sha256-{}", d.hex());
            match lost_found::move_in(&self.root, &self.path(d), &name) {
                Ok(_) => moved.0 += 1,
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "orphan content file could not be moved; left in place")
                }
            }
        }
        for Stray(p) in strays {
            let rel = p.strip_prefix(&self.blobs).unwrap_or(p);
            let name = format!("stray-{}", rel.to_string_lossy().replace('/', "-"));
            match lost_found::move_in(&self.root, p, &name) {
                Ok(_) => moved.1 += 1,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "stray file under blobs/ could not be moved; left in place")
                }
            }
        }
        if moved.0 > 0 {
            tracing::warn!(
                count = moved.0,
                dir = %dir.display(),
                "content files without index rows moved to lost+found"
            );
        }
        if moved.1 > 0 {
            tracing::warn!(
                count = moved.1,
                dir = %dir.display(),
                "stray files under blobs/ moved to lost+found"
            );
        }
    }

    /// Renames the staged file to the digest's path, replacing any file
    /// there: the staged bytes were just hashed, a file already in place may
    /// not hash to its name any more (one verify found corrupt and could not
    /// move aside), and adopting it would serve it again under its digest.
    /// Readers of the replaced file keep reading it.
    fn publish_now(&self, tmp: &Path, digest: &Digest) -> Result<(), StoreError> {
        let dest = self.path(digest);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        // Only the fan-out level is created here: if `blobs/sha256` itself is
        // gone (an unmounted volume), the commit fails rather than filling a
        // fresh directory the volume will hide.
        let fan_created = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.into()),
        };
        std::fs::rename(tmp, &dest)?;
        File::open(&dir)?.sync_all()?;
        if fan_created {
            // A new fan-out directory is itself an entry of its parent:
            // without this fsync a crash could lose the directory and with it
            // the file the index is about to name.
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    fn open_now(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(Some(stored_reader(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn remove_now(&self, digest: &Digest) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes every file of `digests` on this (blocking) thread; absent
    /// ones are fine. Keeps going past a failure and returns the first.
    fn remove_many_now(&self, digests: &[Digest]) -> Result<(), StoreError> {
        let mut first = None;
        for d in digests {
            if let Err(e) = self.remove_now(d) {
                tracing::warn!(digest = %d, error = %e, "content file could not be removed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Opens the file of `digest` for re-hashing.
    fn open_for_hash(&self, digest: &Digest) -> Result<File, StoreError> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Re-hashes the file of `digest`: one blocking step per [`HASH_CHUNK`]
    /// (read and hash together, off the runtime), `pace` between steps.
    async fn hash_paced(&self, digest: &Digest, pace: &mut Pace) -> Result<Hashed, StoreError> {
        let (me, d) = (self.clone(), digest.clone());
        let mut file = blocking(move || me.open_for_hash(&d)).await?;
        let mut hasher = DigestHasher::new();
        let mut size = 0u64;
        loop {
            let n;
            (file, hasher, n) = blocking(move || {
                let mut buf = vec![0u8; HASH_CHUNK];
                let mut n = 0;
                while n < HASH_CHUNK {
                    match file.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                hasher.update(&buf[..n]);
                Ok((file, hasher, n))
            })
            .await?;
            size += n as u64;
            pace.wait(n as u64).await;
            if n < HASH_CHUNK {
                break;
            }
        }
        Ok(Hashed {
            digest: hasher.finish(),
            size,
        })
    }

    /// Moves the file to `quarantine/sha256/<hex>` (or `<hex>.N` when an
    /// earlier copy is there: each is evidence). A rename when possible;
    /// across filesystems (a `blobs/` on its own volume) the file is copied,
    /// fsynced and only then removed. Returns where it went.
    fn quarantine_now(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let src = self.path(digest);
        if !src.is_file() {
            return Ok(None);
        }
        let dir = self.root.join("quarantine").join("sha256");
        std::fs::create_dir_all(&dir)?;
        let hex = digest.hex();
        let mut dest = dir.join(hex);
        let mut n = 0;
        while dest.exists() {
            n += 1;
            dest = dir.join(format!("{hex}.{n}"));
        }
        match std::fs::rename(&src, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                std::fs::copy(&src, &dest)?;
                File::open(&dest)?.sync_all()?;
                std::fs::remove_file(&src)?;
            }
            Err(e) => return Err(e.into()),
        }
        File::open(&dir)?.sync_all()?;
        if let Some(fan) = src.parent() {
            File::open(fan)?.sync_all()?;
        }
        Ok(Some(dest.display().to_string()))
    }

    /// Hard-links `source` into `tmp/` (the same filesystem as `blobs/`),
    /// hashes the link whole on this blocking thread, and renames it into
    /// place when it matches; the link is removed otherwise. Another
    /// filesystem (`EXDEV`) or a filesystem without hard links is
    /// [`Adopted::NotLinked`].
    fn adopt_link_now(&self, source: &Path, digest: &Digest) -> Result<Adopted, StoreError> {
        let staged = self
            .root
            .join("tmp")
            .join(format!("link-{}", crate::store::random_hex()?));
        match std::fs::hard_link(source, &staged) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::CrossesDevices
                    || e.kind() == std::io::ErrorKind::Unsupported
                    || e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Ok(Adopted::NotLinked);
            }
            Err(e) => return Err(e.into()),
        }
        let checked = (|| -> Result<u64, StoreError> {
            let mut file = File::open(&staged)?;
            if !file.metadata()?.is_file() {
                return Err(StoreError::SizeInvalid(format!(
                    "{} is not a regular file",
                    source.display()
                )));
            }
            let mut hasher = DigestHasher::new();
            let mut buf = vec![0u8; HASH_CHUNK];
            let mut size = 0u64;
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        size += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let actual = hasher.finish();
            if actual != *digest {
                return Err(StoreError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            self.publish_now(&staged, digest)?;
            Ok(size)
        })();
        if checked.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        checked.map(Adopted::Linked)
    }

    fn size_now(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl BlobBackend for FsBackend {
    fn prepare(&self, create: bool) -> BoxFuture<'_, Result<bool, StoreError>> {
        let me = self.clone();
        Box::pin(blocking(move || me.prepare_now(create)))
    }

    fn scan(&self) -> BoxFuture<'_, Result<Scan, StoreError>> {
        let me = self.clone();
        Box::pin(blocking(move || me.scan_now()))
    }

    fn set_aside(
        &self,
        orphans: Vec<Digest>,
        strays: Vec<Stray>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let me = self.clone();
        Box::pin(async move {
            if orphans.is_empty() && strays.is_empty() {
                return Ok(());
            }
            blocking(move || {
                me.set_aside_now(&orphans, &strays);
                Ok(())
            })
            .await
        })
    }

    fn location(&self) -> String {
        self.blobs.display().to_string()
    }

    fn publish<'a>(
        &'a self,
        staged: &'a Staged,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (me, tmp, d) = (self.clone(), staged.path().to_path_buf(), digest.clone());
        Box::pin(blocking(move || me.publish_now(&tmp, &d)))
    }

    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobReader>, StoreError>> {
        let (me, d) = (self.clone(), digest.clone());
        Box::pin(blocking(move || me.open_now(&d)))
    }

    fn remove<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), StoreError>> {
        let (me, d) = (self.clone(), digest.clone());
        Box::pin(blocking(move || me.remove_now(&d)))
    }

    fn remove_many(&self, digests: Vec<Digest>) -> BoxFuture<'_, Result<(), StoreError>> {
        let me = self.clone();
        Box::pin(blocking(move || me.remove_many_now(&digests)))
    }

    fn hash<'a>(
        &'a self,
        digest: &'a Digest,
        pace: &'a mut Pace,
    ) -> BoxFuture<'a, Result<Hashed, StoreError>> {
        Box::pin(self.hash_paced(digest, pace))
    }

    fn quarantine<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let (me, d) = (self.clone(), digest.clone());
        Box::pin(blocking(move || me.quarantine_now(&d)))
    }

    fn size_on_disk<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        let (me, d) = (self.clone(), digest.clone());
        Box::pin(blocking(move || me.size_now(&d)))
    }

    fn export<'a>(
        &'a self,
        digest: &'a Digest,
        to: &'a Arc<super::BackupDir>,
    ) -> BoxFuture<'a, Result<super::Exported, StoreError>> {
        let (src, d, to) = (self.path(digest), digest.clone(), to.clone());
        Box::pin(blocking(move || super::backup::export_file(&src, &d, &to)))
    }

    fn adopt_link<'a>(
        &'a self,
        source: &'a Path,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Adopted, StoreError>> {
        let (me, s, d) = (self.clone(), source.to_path_buf(), digest.clone());
        Box::pin(blocking(move || me.adopt_link_now(&s, &d)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Content;
    use super::*;

    async fn stored(content: &Content, bytes: &'static [u8]) -> Digest {
        let mut w = content.lazy_writer().unwrap();
        w.write(Bytes::from_static(bytes)).await.unwrap();
        w.commit(None).await.unwrap().0
    }

    async fn setup() -> (tempfile::TempDir, Content) {
        let dir = tempfile::tempdir().unwrap();
        let content = Content::fs(dir.path());
        assert!(content.prepare(true).await.unwrap());
        (dir, content)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn adopt_link_links_verified_bytes_and_refuses_a_mismatch() {
        use std::os::unix::fs::MetadataExt;
        let (dir, content) = setup().await;
        let src = dir.path().join("outside-data");
        std::fs::write(&src, b"imported bytes").unwrap();
        let d = Digest::of_bytes(b"imported bytes");
        assert_eq!(
            content.adopt_link(&src, &d).await.unwrap(),
            Adopted::Linked(14)
        );
        let stored = layout_path(&dir.path().join("blobs/sha256"), &d);
        assert_eq!(
            std::fs::metadata(&stored).unwrap().ino(),
            std::fs::metadata(&src).unwrap().ino(),
            "a hard link, not a copy"
        );
        let wrong = Digest::of_bytes(b"other bytes");
        assert!(matches!(
            content.adopt_link(&src, &wrong).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(content.open(&wrong).await.unwrap().is_none());
        assert_eq!(std::fs::metadata(&src).unwrap().nlink(), 2);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no link left behind"
        );
        // Another filesystem (when the machine has one at hand): not linked.
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && std::fs::metadata(shm).unwrap().dev() != std::fs::metadata(dir.path()).unwrap().dev()
        {
            let other = tempfile::tempdir_in(shm).unwrap();
            let far = other.path().join("data");
            std::fs::write(&far, b"far bytes").unwrap();
            let fd = Digest::of_bytes(b"far bytes");
            assert_eq!(
                content.adopt_link(&far, &fd).await.unwrap(),
                Adopted::NotLinked
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn committed_content_reads_back_and_leaves_no_staged_file() {
        let (dir, content) = setup().await;
        let d = stored(&content, b"hello blob").await;
        assert_eq!(d, Digest::of_bytes(b"hello blob"));
        let r = content.open(&d).await.unwrap().expect("stored");
        assert_eq!(r.read(6, 4).await.unwrap().as_ref(), b"blob");
        assert!(r.read(6, 5).await.is_err(), "past the end");
        assert_eq!(content.size_on_disk(&d).await.unwrap(), Some(10));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let again = stored(&content, b"hello blob").await;
        assert_eq!(again, d, "the same bytes again keep the existing file");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_mismatch_keeps_nothing() {
        let (dir, content) = setup().await;
        let mut w = content.writer().unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        let wrong = Digest::of_bytes(b"abd");
        assert!(matches!(
            w.commit(Some(&wrong)).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(content.open(&wrong).await.unwrap().is_none());
        assert!(content.scan().await.unwrap().content.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_staged_file_is_readable_while_it_grows() {
        let (_dir, content) = setup().await;
        let mut w = content.writer().unwrap();
        let r = w.reader().await.unwrap();
        w.write(Bytes::from_static(b"first ")).await.unwrap();
        w.sync_pending().await.unwrap();
        assert_eq!(w.flushed(), 6);
        assert_eq!(r.read(0, 6).await.unwrap().as_ref(), b"first ");
        w.write(Bytes::from_static(b"second")).await.unwrap();
        let (d, n) = w.commit(None).await.unwrap();
        assert_eq!(n, 12);
        assert_eq!(
            r.read(6, 6).await.unwrap().as_ref(),
            b"second",
            "after publish too"
        );
        assert!(content.open(&d).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hash_quarantine_and_remove_act_on_stored_content() {
        let (dir, content) = setup().await;
        let d = stored(&content, b"to be checked").await;
        let hashed = content.hash(&d, &mut Pace::unlimited()).await.unwrap();
        assert_eq!((hashed.digest, hashed.size), (d.clone(), 13));
        let file = layout_path(&dir.path().join("blobs/sha256"), &d);
        std::fs::write(&file, b"to be chucked").unwrap();
        let hashed = content.hash(&d, &mut Pace::unlimited()).await.unwrap();
        assert_ne!(hashed.digest, d, "corruption shows");
        let went = content.quarantine(&d).await.unwrap().expect("moved");
        assert!(
            content.open(&d).await.unwrap().is_none(),
            "never served again"
        );
        let kept = dir.path().join("quarantine/sha256").join(d.hex());
        assert_eq!(went, kept.display().to_string());
        assert_eq!(std::fs::read(&kept).unwrap(), b"to be chucked");
        assert_eq!(
            content.quarantine(&d).await.unwrap(),
            None,
            "nothing left to move"
        );
        assert!(matches!(
            content.hash(&d, &mut Pace::unlimited()).await,
            Err(StoreError::BlobUnknown(_))
        ));
        // Stored and corrupted again: the earlier evidence stays.
        let again = stored(&content, b"to be checked").await;
        assert_eq!(again, d);
        let went = content.quarantine(&d).await.unwrap().expect("moved");
        assert!(went.ends_with(&format!("{}.1", d.hex())), "{went}");
        assert_eq!(std::fs::read(&kept).unwrap(), b"to be chucked");

        let other = stored(&content, b"to be removed").await;
        content.remove(&other).await.unwrap();
        content.remove(&other).await.unwrap();
        assert_eq!(content.size_on_disk(&other).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn many_digests_go_in_one_call_and_absent_ones_are_fine() {
        let (_dir, content) = setup().await;
        let mut ds = Vec::new();
        for i in 0..20u8 {
            let mut w = content.lazy_writer().unwrap();
            w.write(Bytes::from(vec![i; 100])).await.unwrap();
            ds.push(w.commit(None).await.unwrap().0);
        }
        let keep = ds.pop().unwrap();
        let mut doomed = ds.clone();
        doomed.push(Digest::of_bytes(b"never stored"));
        content.remove_many(doomed).await.unwrap();
        for d in &ds {
            assert_eq!(content.size_on_disk(d).await.unwrap(), None);
        }
        assert_eq!(content.size_on_disk(&keep).await.unwrap(), Some(100));
        content.remove_many(Vec::new()).await.unwrap();
        assert_eq!(content.scan().await.unwrap().content, vec![keep]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_paced_hash_takes_as_long_as_its_rate_asks() {
        let (_dir, content) = setup().await;
        let mut w = content.lazy_writer().unwrap();
        w.write(Bytes::from(vec![7u8; 3 << 20])).await.unwrap();
        let (d, _) = w.commit(None).await.unwrap();
        let started = std::time::Instant::now();
        // 3 MiB at 10 MiB/s: at least 0.3 s.
        let hashed = content.hash(&d, &mut Pace::new(10 << 20)).await.unwrap();
        assert_eq!(hashed.digest, d);
        assert!(started.elapsed() >= std::time::Duration::from_millis(290));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_guard_lives_as_long_as_its_reader() {
        let (_dir, content) = setup().await;
        let d = stored(&content, b"guarded").await;
        let guard = Arc::new(());
        let r = content
            .open(&d)
            .await
            .unwrap()
            .unwrap()
            .keep_alive(guard.clone());
        assert_eq!(Arc::strong_count(&guard), 2);
        drop(r);
        assert_eq!(Arc::strong_count(&guard), 1);
    }
}
