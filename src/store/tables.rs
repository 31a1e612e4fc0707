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
/// (repo, manifest digest) → [`super::meta::RefsRecord`]: the digests a
/// manifest names (an image's config and layers, an index's child manifests;
/// not its subject, which is a referrer link and not content it needs).
/// Written in the same transaction as the manifest row and removed with it;
/// what gc marks from and what a pin's closure follows.
pub const MANIFEST_REFS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("manifest_refs-0");
/// digest → unix seconds of its last read, as last flushed from memory (reads
/// are recorded in memory and written here in batches, see `store/access.rs`).
pub const ACCESS: TableDefinition<'_, &str, u64> = TableDefinition::new("access-0");
/// pin reference (`<repo>:<tag>` or `<repo>@<digest>`) → [`super::meta::PinRecord`]:
/// pinned images (their whole closure) are never evicted nor collected.
pub const PINS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pins-0");
/// digest → unix seconds: content whose rows a gc or eviction pass removed and
/// whose file it has not removed yet. Written in the transaction that removes
/// the rows and cleared once the file is gone, so a crash in between leaves a
/// list start-up finishes (instead of orphans it would move to `lost+found/`).
pub const SWEEPING: TableDefinition<'_, &str, u64> = TableDefinition::new("sweeping-0");
/// key → number: `"version"` is the index schema version (see `store/migrate.rs`).
pub const SCHEMA: TableDefinition<'_, &str, u64> = TableDefinition::new("schema-0");
/// sequence → [`super::replication_ops::QueueItem`]: replication work not
/// done yet, in the order it was queued (see `store/replication_ops.rs`).
pub const REPLICATION_QUEUE: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("replication_queue-0");
/// `[[sync]]` rule key (image and tags) → [`super::sync_ops::SyncState`]:
/// last run, last pass summary, the digests seen (bounded).
pub const SYNC_STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sync_state-0");
