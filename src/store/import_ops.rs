//! Content arriving from outside the API (`wharf import` of a `registry:2`
//! storage root): a file is copied in (streamed, hashed while written) or,
//! when asked and possible, hard-linked ([`super::content::BlobBackend::adopt_link`]),
//! verified against its digest either way, and recorded as pushed in its
//! repository exactly like an upload. The source file is only ever read.

use std::path::Path;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::content::Adopted;
use super::meta::{BlobRecord, Origin, decode};
use super::{Store, StoreError, tables};
use crate::oci::{Digest, RepoName};

/// Bytes read from a source file per step.
const IMPORT_CHUNK: usize = 1 << 20;

/// How one blob arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportedBlob {
    /// Copied in: this many bytes.
    Copied(u64),
    /// Hard-linked in: this many bytes.
    Linked(u64),
}

impl Store {
    /// Size of `digest` when it is stored at all (in any repository).
    pub async fn stored_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let d = digest.to_string();
        self.meta
            .read(move |txn| {
                Ok(match txn.open_table(tables::BLOBS)?.get(d.as_str())? {
                    Some(v) => Some(decode::<BlobRecord>(v.value())?.size),
                    None => None,
                })
            })
            .await
    }

    /// Links a blob stored already into `repo` as pushed (an import that
    /// finds it there copies nothing).
    pub async fn link_stored(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        self.record_blob(repo, digest, size, Origin::Pushed).await
    }

    /// Brings the regular file `source` in as `expected` and links it into
    /// `repo` as pushed. With `link`, a hard link where the backend can
    /// (verified by hashing), a copy otherwise. A file whose bytes do not hash
    /// to `expected` is [`StoreError::DigestMismatch`] and nothing is kept.
    /// The file is opened without following a symlink.
    pub async fn import_blob(
        &self,
        repo: &RepoName,
        expected: &Digest,
        source: &Path,
        link: bool,
    ) -> Result<ImportedBlob, StoreError> {
        if link {
            let hold = self.commits.hold(expected).await?;
            if let Adopted::Linked(size) = self.files.adopt_link(source, expected).await? {
                if let Err(e) = self.record_blob(repo, expected, size, Origin::Pushed).await {
                    hold.discard(self.meta.clone(), self.files.clone()).await;
                    return Err(e);
                }
                return Ok(ImportedBlob::Linked(size));
            }
        }
        let mut file = open_regular(source).await?;
        let mut writer = self.lazy_writer()?;
        loop {
            let mut buf = BytesMut::with_capacity(IMPORT_CHUNK);
            let n = file.read_buf(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.write(buf.freeze()).await?;
        }
        let (_, size) = self
            .store_blob(writer, repo, expected, Origin::Pushed)
            .await?;
        Ok(ImportedBlob::Copied(size))
    }
}

/// Opens `path` for reading, refusing a symlink as the last component and
/// anything but a regular file (a FIFO would block a reader for ever).
async fn open_regular(path: &Path) -> Result<tokio::fs::File, StoreError> {
    let p = path.to_path_buf();
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&p)?;
        if !file.metadata()?.is_file() {
            return Err(StoreError::SizeInvalid(format!(
                "{} is not a regular file",
                p.display()
            )));
        }
        Ok(file)
    })
    .await??;
    Ok(tokio::fs::File::from_std(file))
}
