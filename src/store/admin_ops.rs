//! Reads for the admin API: disk usage, repository summaries (with when they
//! were last pulled and whether they are pinned), one repository's tags with
//! their platforms and pins.

use std::collections::{BTreeMap, HashMap, HashSet};

use redb::ReadableTable;
use serde::Serialize;

use super::access::{AccessMap, last_touch};
use super::manifest_ops::ManifestInfo;
use super::meta::{BlobRecord, ManifestRecord, Origin, PinRecord, RepoRecord, TagRecord, decode};
use super::{Store, StoreError, tables};
use crate::oci::platform::{self, Platforms};
use crate::oci::{Digest, RepoName};

/// Disk usage by origin.
#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// Content files (blobs and manifests).
    pub blobs: u64,
    /// Bytes in all content files.
    pub bytes: u64,
    /// Content files pushed by users.
    pub pushed_blobs: u64,
    /// Bytes pushed by users.
    pub pushed_bytes: u64,
    /// Content files mirrored from upstreams.
    pub cached_blobs: u64,
    /// Bytes mirrored from upstreams (the eviction budget's share).
    pub cached_bytes: u64,
    /// Cached bytes by the upstream they came from. Content shared by mirrors
    /// of two upstreams counts once, for the first; content no repository links
    /// any more (waiting for gc) counts for none.
    pub cached_by_upstream: BTreeMap<String, u64>,
}

/// One repository.
#[derive(Debug, Serialize)]
pub struct RepoSummary {
    /// Name (the local one: mirrored names carry their upstream's).
    pub name: String,
    /// pushed or cached.
    pub origin: Origin,
    /// The upstream a mirrored repository comes from.
    pub upstream: Option<String>,
    /// Number of tags.
    pub tags: u64,
    /// Number of manifests.
    pub manifests: u64,
    /// Bytes of the blobs linked in the repository and of its manifests
    /// (content shared with other repositories counts in each).
    pub bytes: u64,
    /// Unix seconds of the last read of any of its manifests (a pull), from
    /// the last-read times, flushed or still in memory; `None`: never read.
    /// Times are per digest, so a manifest shared with another repository
    /// counts a pull of either.
    pub last_pulled: Option<u64>,
    /// Whether a pin names the repository.
    pub pinned: bool,
}

/// A page of [`RepoSummary`]s and how many the listing holds in all.
#[derive(Debug)]
pub struct SummaryPage {
    /// The page, in name order.
    pub items: Vec<RepoSummary>,
    /// How many repositories the listing selects (every page together).
    pub total: usize,
}

/// One repository with its tags.
#[derive(Debug, Serialize)]
pub struct RepoDetail {
    /// Name (the local one).
    pub name: String,
    /// pushed or cached.
    pub origin: Origin,
    /// The upstream a mirrored repository comes from.
    pub upstream: Option<String>,
    /// Tags in lexical order.
    pub tags: Vec<TagDetail>,
}

/// One tag of a repository.
#[derive(Debug, Serialize)]
pub struct TagDetail {
    /// The tag.
    pub tag: String,
    /// The manifest it points at.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The manifest's media type.
    pub media_type: String,
    /// `os/arch[/variant]` of every platform the manifest serves (empty when
    /// it names none: an artifact).
    pub platforms: Vec<String>,
    /// Unix seconds of the tag's last change.
    pub updated: u64,
    /// Unix seconds of the last read of the manifest it points at (a pull);
    /// `None`: never read.
    pub last_pulled: Option<u64>,
    /// Whether a pin protects the tag: a pin of the tag itself, or of the
    /// manifest it points at.
    pub pinned: bool,
}

/// The pins of the repositories, decoded once per read.
#[derive(Default)]
struct PinIndex {
    /// Repositories any pin names.
    repos: HashSet<String>,
    /// (repo, tag) of tag pins.
    tags: HashSet<(String, String)>,
    /// (repo, digest) of every pin's manifest.
    digests: HashSet<(String, String)>,
}

impl PinIndex {
    fn read(
        pins: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<PinIndex, StoreError> {
        let mut out = PinIndex::default();
        for item in pins.iter()? {
            let (_, v) = item?;
            let pin: PinRecord = decode(v.value())?;
            if let Some(tag) = pin.tag {
                out.tags.insert((pin.repo.clone(), tag));
            }
            out.digests.insert((pin.repo.clone(), pin.digest));
            out.repos.insert(pin.repo);
        }
        Ok(out)
    }

    /// Whether `tag` of `repo`, pointing at `digest`, is protected.
    fn protects(&self, repo: &str, tag: &str, digest: &str) -> bool {
        self.tags.contains(&(repo.to_owned(), tag.to_owned()))
            || self.digests.contains(&(repo.to_owned(), digest.to_owned()))
    }
}

/// Entries of a `(repo, _)`-keyed table that belong to `repo`.
fn in_repo<'a, V: redb::Value + 'static>(
    table: &'a impl ReadableTable<(&'static str, &'static str), V>,
    repo: &'a str,
) -> Result<
    impl Iterator<Item = Result<(String, redb::AccessGuard<'a, V>), StoreError>> + 'a,
    StoreError,
> {
    Ok(table
        .range((repo, "")..)?
        .map(move |item| {
            let (k, v) = item?;
            let (r, key) = k.value();
            Ok((r == repo).then(|| (key.to_owned(), v)))
        })
        .map_while(|r: Result<Option<_>, StoreError>| r.transpose()))
}

impl Store {
    /// Totals over every content file.
    pub async fn usage(&self) -> Result<Usage, StoreError> {
        self.meta
            .read(|txn| {
                let mut u = Usage::default();
                let blobs = txn.open_table(tables::BLOBS)?;
                let mut cached: HashMap<String, u64> = HashMap::new();
                for item in blobs.iter()? {
                    let (k, v) = item?;
                    let rec: BlobRecord = decode(v.value())?;
                    u.blobs += 1;
                    u.bytes += rec.size;
                    match rec.origin {
                        Origin::Pushed => {
                            u.pushed_blobs += 1;
                            u.pushed_bytes += rec.size;
                        }
                        Origin::Cached => {
                            u.cached_blobs += 1;
                            u.cached_bytes += rec.size;
                            cached.insert(k.value().to_owned(), rec.size);
                        }
                    }
                }
                // Attribute each cached file to the upstream of the first
                // mirrored repository that links it.
                let links = txn.open_table(tables::REPO_BLOBS)?;
                let manifests = txn.open_table(tables::MANIFESTS)?;
                for item in txn.open_table(tables::REPOS)?.iter()? {
                    let (k, v) = item?;
                    let rec: RepoRecord = decode(v.value())?;
                    let Some(upstream) = rec.upstream else {
                        continue;
                    };
                    let repo = k.value();
                    let mut take = |digest: &str| {
                        if let Some(size) = cached.remove(digest) {
                            *u.cached_by_upstream.entry(upstream.clone()).or_default() += size;
                        }
                    };
                    for e in in_repo(&links, repo)? {
                        take(&e?.0);
                    }
                    for e in in_repo(&manifests, repo)? {
                        take(&e?.0);
                    }
                }
                Ok(u)
            })
            .await
    }

    /// Every repository with its counts, bytes, last pull and pin.
    pub async fn repo_summaries(&self) -> Result<Vec<RepoSummary>, StoreError> {
        Ok(self
            .repo_summaries_page(|_| true, 0, usize::MAX)
            .await?
            .items)
    }

    /// One page of the repositories `wanted` selects, in name order: the
    /// `limit` after the first `skip` of them, summarized, and how many it
    /// selects in all. Only names are read for the rest, so a page of a
    /// listing of many thousands costs a walk of the names plus `limit`
    /// summaries (what the web page's list does per request).
    pub async fn repo_summaries_page<F>(
        &self,
        wanted: F,
        skip: usize,
        limit: usize,
    ) -> Result<SummaryPage, StoreError>
    where
        F: Fn(&str) -> bool + Send + 'static,
    {
        let touches: std::sync::Arc<AccessMap> = self.access.clone();
        self.meta
            .read(move |txn| {
                let access = txn.open_table(tables::ACCESS)?;
                let pins = PinIndex::read(&txn.open_table(tables::PINS)?)?;
                let tags = txn.open_table(tables::TAGS)?;
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let links = txn.open_table(tables::REPO_BLOBS)?;
                let blobs = txn.open_table(tables::BLOBS)?;
                let size_of = |digest: &str| -> Result<u64, StoreError> {
                    Ok(match blobs.get(digest)? {
                        Some(v) => decode::<BlobRecord>(v.value())?.size,
                        None => 0,
                    })
                };
                let mut items = Vec::new();
                let mut total = 0usize;
                for item in txn.open_table(tables::REPOS)?.iter()? {
                    let (k, v) = item?;
                    if !wanted(k.value()) {
                        continue;
                    }
                    total += 1;
                    if total <= skip || items.len() >= limit {
                        continue;
                    }
                    let name = k.value().to_owned();
                    let rec: RepoRecord = decode(v.value())?;
                    let mut bytes = 0;
                    for e in in_repo(&links, &name)? {
                        bytes += size_of(&e?.0)?;
                    }
                    let mut manifest_count = 0;
                    let mut last_pulled: Option<u64> = None;
                    for e in in_repo(&manifests, &name)? {
                        let (digest, v) = e?;
                        bytes += decode::<ManifestRecord>(v.value())?.size;
                        manifest_count += 1;
                        let read = last_touch(&touches, &access, &digest)?;
                        last_pulled = last_pulled.max(read);
                    }
                    let tag_count = in_repo(&tags, &name)?.count() as u64;
                    let pinned = pins.repos.contains(&name);
                    items.push(RepoSummary {
                        name,
                        origin: rec.origin,
                        upstream: rec.upstream,
                        tags: tag_count,
                        manifests: manifest_count,
                        bytes,
                        last_pulled,
                        pinned,
                    });
                }
                Ok(SummaryPage { items, total })
            })
            .await
    }

    /// Whether `repo` exists (holds or held content).
    pub async fn has_repo(&self, repo: &RepoName) -> Result<bool, StoreError> {
        let r = repo.to_string();
        self.meta
            .read(move |txn| Ok(txn.open_table(tables::REPOS)?.get(r.as_str())?.is_some()))
            .await
    }

    /// `repo` with its tags and their platforms; `None` if it does not exist.
    /// Manifests (and, for image manifests, config blobs of at most
    /// [`platform::MAX_CONFIG_BYTES`]) are read once per digest.
    pub async fn repo_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>, StoreError> {
        Ok(self
            .repo_tags_page(repo, |_| true, 0, usize::MAX)
            .await?
            .map(|(detail, _)| detail))
    }

    /// Like [`Store::repo_detail`], but only the tags `wanted` selects, and of
    /// those only `limit` after the first `skip`, with how many it selects in
    /// all: a page of a repository with 100,000 tags decodes and reads the
    /// manifests of that page's tags only.
    pub async fn repo_tags_page(
        &self,
        repo: &RepoName,
        wanted: impl Fn(&str) -> bool + Send + 'static,
        skip: usize,
        limit: usize,
    ) -> Result<Option<(RepoDetail, usize)>, StoreError> {
        let r = repo.to_string();
        let touches: std::sync::Arc<AccessMap> = self.access.clone();
        let rows = self
            .meta
            .read(move |txn| {
                let Some(rec) = txn.open_table(tables::REPOS)?.get(r.as_str())? else {
                    return Ok(None);
                };
                let access = txn.open_table(tables::ACCESS)?;
                let rec: RepoRecord = decode(rec.value())?;
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let pins = PinIndex::read(&txn.open_table(tables::PINS)?)?;
                let mut tags = Vec::new();
                let mut total = 0usize;
                for e in in_repo(&txn.open_table(tables::TAGS)?, &r)? {
                    let (tag, v) = e?;
                    if !wanted(&tag) {
                        continue;
                    }
                    total += 1;
                    if total <= skip || tags.len() >= limit {
                        continue;
                    }
                    let t: TagRecord = decode(v.value())?;
                    let m: Option<ManifestRecord> = manifests
                        .get((r.as_str(), t.digest.as_str()))?
                        .map(|v| decode(v.value()))
                        .transpose()?;
                    let (size, media_type) = m.map(|m| (m.size, m.media_type)).unwrap_or_default();
                    let pinned = pins.protects(&r, &tag, &t.digest);
                    let last_pulled = last_touch(&touches, &access, &t.digest)?;
                    tags.push(TagDetail {
                        last_pulled,
                        tag,
                        digest: t.digest,
                        size,
                        media_type,
                        platforms: Vec::new(),
                        updated: t.updated,
                        pinned,
                    });
                }
                let detail = RepoDetail {
                    name: r,
                    origin: rec.origin,
                    upstream: rec.upstream,
                    tags,
                };
                Ok(Some((detail, total)))
            })
            .await?;
        let Some((mut detail, total)) = rows else {
            return Ok(None);
        };
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for t in &mut detail.tags {
            if let Some(p) = seen.get(&t.digest) {
                t.platforms = p.clone();
                continue;
            }
            let p = self.platforms(&t.digest, &t.media_type, t.size).await;
            seen.insert(t.digest.clone(), p.clone());
            t.platforms = p;
        }
        Ok(Some((detail, total)))
    }

    /// The platforms of a stored manifest; empty when they cannot be read
    /// (the listing never fails for one unreadable manifest).
    async fn platforms(&self, digest: &str, media_type: &str, size: u64) -> Vec<String> {
        let Ok(digest) = digest.parse::<Digest>() else {
            return Vec::new();
        };
        let info = ManifestInfo {
            digest,
            media_type: media_type.to_owned(),
            size,
        };
        let Ok(bytes) = self.manifest_bytes(&info).await else {
            return Vec::new();
        };
        let parsed = tokio::task::spawn_blocking(move || platform::of_manifest(&bytes)).await;
        match parsed {
            Ok(Platforms::Listed(p)) => p,
            Ok(Platforms::InConfig(digest, size)) => {
                let config = ManifestInfo {
                    digest,
                    media_type: String::new(),
                    size,
                };
                match self.manifest_bytes(&config).await {
                    Ok(b) if b.len() as u64 <= platform::MAX_CONFIG_BYTES => {
                        platform::of_config(&b).into_iter().collect()
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}
