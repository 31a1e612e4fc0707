//! Following `manifest_refs`: what a manifest needs (recursively, an index's
//! children and theirs), and what the pins protect. Generic over read and
//! write transactions' tables, so a pass computes it on its read snapshot and
//! again inside the write job that acts on it. Index rows only: no content is
//! read here (these run inside redb transactions).
//!
//! Every manifest has a `manifest_refs` row once start-up's migration ran
//! (`migrate.rs`). A row marked unknown (content missing or unparsable then)
//! or, defensively, a missing row means references that cannot be known: the
//! manifest's repository is reported so the caller keeps everything linked
//! there.

use std::collections::HashSet;

use redb::ReadableTable;

use super::StoreError;
use super::meta::{PinRecord, RefsRecord, TagRecord, decode};

/// The tables a closure reads.
pub(super) struct RefTables<'a, M, R> {
    /// `manifests`.
    pub manifests: &'a M,
    /// `manifest_refs`.
    pub refs: &'a R,
}

impl<M, R> RefTables<'_, M, R>
where
    M: ReadableTable<(&'static str, &'static str), &'static [u8]>,
    R: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    /// The references of manifest `digest` in `repo`: None when there is no
    /// such manifest, `Some(None)` when they cannot be known.
    pub(super) fn refs_of(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Option<RefsRecord>>, StoreError> {
        if let Some(v) = self.refs.get((repo, digest))? {
            let rec: RefsRecord = decode(v.value())?;
            return Ok(Some((!rec.unknown).then_some(rec)));
        }
        if self.manifests.get((repo, digest))?.is_some() {
            tracing::warn!(
                repo,
                digest,
                "manifest without a references row: its repository is kept whole"
            );
            return Ok(Some(None));
        }
        Ok(None)
    }

    /// Adds `root` (a manifest of `repo`) and everything it needs to `out`;
    /// a repository whose references cannot be known goes to `unknown`.
    pub(super) fn close_over(
        &self,
        repo: &str,
        root: &str,
        out: &mut HashSet<String>,
        unknown: &mut HashSet<String>,
    ) -> Result<(), StoreError> {
        let mut todo = vec![root.to_owned()];
        let mut seen = HashSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            out.insert(d.clone());
            match self.refs_of(repo, &d)? {
                None => {}
                Some(None) => {
                    unknown.insert(repo.to_owned());
                }
                Some(Some(refs)) => {
                    out.extend(refs.blobs);
                    todo.extend(refs.manifests);
                }
            }
        }
        Ok(())
    }
}

/// Everything the pins protect: each pinned digest, and for a tag pin what
/// the tag points at now, with their closures. Repositories whose references
/// cannot be known go to `unknown`.
pub(super) fn pinned<M, R>(
    pins: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    t: &RefTables<'_, M, R>,
    unknown: &mut HashSet<String>,
) -> Result<HashSet<String>, StoreError>
where
    M: ReadableTable<(&'static str, &'static str), &'static [u8]>,
    R: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let mut out = HashSet::new();
    for item in pins.iter()? {
        let (_, v) = item?;
        let pin: PinRecord = decode(v.value())?;
        t.close_over(&pin.repo, &pin.digest, &mut out, unknown)?;
        if let Some(tag) = &pin.tag {
            if let Some(v) = tags.get((pin.repo.as_str(), tag.as_str()))? {
                let now: TagRecord = decode(v.value())?;
                t.close_over(&pin.repo, &now.digest, &mut out, unknown)?;
            }
        }
    }
    Ok(out)
}

/// Adds to `out` every digest linked into, or held as a manifest by, a
/// repository in `unknown` (whose references cannot be known): the safe
/// answer is to keep all of it.
pub(super) fn keep_unknown<M>(
    links: &impl ReadableTable<(&'static str, &'static str), ()>,
    manifests: &M,
    unknown: &HashSet<String>,
    out: &mut HashSet<String>,
) -> Result<(), StoreError>
where
    M: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    for r in unknown {
        for item in links.range((r.as_str(), "")..)? {
            let (k, _) = item?;
            let (kr, d) = k.value();
            if kr != r {
                break;
            }
            out.insert(d.to_owned());
        }
        for item in manifests.range((r.as_str(), "")..)? {
            let (k, _) = item?;
            let (kr, d) = k.value();
            if kr != r {
                break;
            }
            out.insert(d.to_owned());
        }
    }
    Ok(())
}
