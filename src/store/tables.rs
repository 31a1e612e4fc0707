//! Every redb table wharf uses, in one place. Names carry a version suffix so a
//! future change of encoding can live beside the old table during migration.
//!
//! Values are small serde_json documents (see `meta.rs`), decoded with an error
//! rather than a panic if the index is ever damaged.

use redb::TableDefinition;

/// digest → [`super::meta::BlobRecord`]: every content file, blobs and manifests alike.
pub const BLOBS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("blobs-0");
/// (repo, digest) → (): a blob is readable in a repo only if linked here.
pub const REPO_BLOBS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("repo_blobs-0");
/// (repo, digest) → [`super::meta::ManifestRecord`].
pub const MANIFESTS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("manifests-0");
/// (repo, tag) → [`super::meta::TagRecord`].
pub const TAGS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("tags-0");
/// (repo, subject digest, referrer digest) → referrer descriptor JSON.
pub const REFERRERS: TableDefinition<'_, (&str, &str, &str), &[u8]> =
    TableDefinition::new("referrers-0");
/// upload id → [`super::meta::UploadRecord`].
pub const UPLOADS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("uploads-0");
/// repo → [`super::meta::RepoRecord`].
pub const REPOS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("repos-0");
