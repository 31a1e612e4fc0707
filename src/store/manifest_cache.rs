//! The hot manifest path in memory: what a manifest lookup found in the index
//! (tag → digest → media type and size, the image's closure), what a mirrored
//! tag's state is, and the bytes of small manifests, so a GET of a popular
//! tag costs no index read, no file read and no blocking-pool hop.
//!
//! Correct by construction, not by time: every index answer is stamped with
//! the index's write generation ([`Meta::generation`](super::Meta::generation))
//! loaded *before* the read transaction that produced it, and is used only
//! while the generation is unchanged. The index writer moves the generation on
//! after each commit and before the writer is answered, so a tag PUT, a
//! delete, a gc or eviction pass, a pin: any write makes every answer derived
//! earlier stale before the request that wrote returns. (Writes are few: a
//! flush of last-read times every few seconds, pushes, cache fills; each costs
//! a hot key one index read again.)
//!
//! Manifest bytes are keyed by digest: content-addressed, they never change;
//! they are hashed when cached, so what is served from memory is what the
//! digest names even if the file were damaged, and they are served only after
//! a current index answer said the manifest is in the repository.
//!
//! The maps are bounded by an estimate of the bytes they hold; past it,
//! arbitrary entries go, down to three quarters (an evicted hot entry comes
//! back on its next miss).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::ManifestInfo;
use crate::oci::Digest;

/// What the cache knows about a mirrored tag.
#[derive(Debug, Clone)]
pub struct CachedTag {
    /// The digest it pointed at when last confirmed.
    pub digest: Digest,
    /// Unix seconds of the last confirmation upstream.
    pub checked: u64,
    /// Whether the manifest bytes are here.
    pub manifest_present: bool,
}

/// Bytes of index answers kept (keys, records, closures).
const LOOKUP_BUDGET: usize = 16 << 20;
/// Bytes of manifest content kept.
const BYTES_BUDGET: usize = 32 << 20;
/// Larger manifests are read from their file each time (they are rare, and
/// hashing one on the runtime when it is cached must stay cheap: well under
/// a millisecond at this size).
pub(super) const MAX_CACHED_MANIFEST: u64 = 64 << 10;

/// One manifest lookup's answer.
pub(super) struct Lookup {
    /// The index generation it was read at.
    generation: u64,
    /// What the lookup returns.
    pub(super) info: ManifestInfo,
    /// The manifest and everything it needs (touched on each lookup).
    pub(super) closure: Vec<String>,
    /// Unix seconds the closure was last touched from this entry: last-read
    /// times have a resolution of seconds, so once a second is enough.
    touched: AtomicU64,
}

impl Lookup {
    /// Whether the closure needs touching at `now` (and records that it is
    /// being touched).
    pub(super) fn touch_due(&self, now: u64) -> bool {
        self.touched.fetch_max(now, Ordering::Relaxed) < now
    }

    fn cost(&self, key: &str) -> usize {
        key.len()
            + 160
            + self.info.media_type.len()
            + self.closure.iter().map(|d| d.len() + 24).sum::<usize>()
    }
}

/// A map bounded by an estimate of what its entries hold.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    held: usize,
    budget: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(budget: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            held: 0,
            budget,
        }
    }

    fn insert(&mut self, key: K, value: V, cost: usize, cost_of: impl Fn(&K, &V) -> usize) {
        if cost > self.budget {
            return;
        }
        if let Some(old) = self.map.remove(&key) {
            self.held -= cost_of(&key, &old);
        }
        if self.held + cost > self.budget {
            // Down to three quarters in one pass, so a stream of misses costs
            // one sweep per quarter of the budget, not a search per insert.
            let goal = self.budget / 4 * 3;
            let mut held = self.held;
            self.map.retain(|k, v| {
                if held + cost <= goal {
                    return true;
                }
                held -= cost_of(k, v);
                false
            });
            self.held = held;
        }
        self.held += cost;
        self.map.insert(key, value);
    }
}

/// The cache (one per [`Store`](super::Store)).
pub(super) struct ManifestCache {
    lookups: RwLock<Bounded<Box<str>, Arc<Lookup>>>,
    tags: RwLock<Bounded<Box<str>, (u64, CachedTag)>>,
    bytes: RwLock<Bounded<Digest, Bytes>>,
}

impl Default for ManifestCache {
    fn default() -> Self {
        ManifestCache {
            lookups: RwLock::new(Bounded::new(LOOKUP_BUDGET)),
            tags: RwLock::new(Bounded::new(LOOKUP_BUDGET / 4)),
            bytes: RwLock::new(Bounded::new(BYTES_BUDGET)),
        }
    }
}

fn tag_cost(key: &str) -> usize {
    key.len() + 200
}

impl ManifestCache {
    /// The lookup answer for `key`, if it was read at `generation`.
    pub(super) fn lookup(&self, key: &str, generation: u64) -> Option<Arc<Lookup>> {
        let map = self.lookups.read().ok()?;
        map.map
            .get(key)
            .filter(|l| l.generation == generation)
            .cloned()
    }

    /// Keeps a lookup answer read at `generation`.
    pub(super) fn keep_lookup(
        &self,
        key: &str,
        generation: u64,
        info: ManifestInfo,
        closure: Vec<String>,
        touched: u64,
    ) {
        let entry = Lookup {
            generation,
            info,
            closure,
            touched: AtomicU64::new(touched),
        };
        let cost = entry.cost(key);
        if let Ok(mut map) = self.lookups.write() {
            map.insert(key.into(), Arc::new(entry), cost, |k, v| v.cost(k));
        }
    }

    /// A mirrored tag's state, if it was read at `generation`.
    pub(super) fn tag(&self, key: &str, generation: u64) -> Option<CachedTag> {
        let map = self.tags.read().ok()?;
        map.map
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, t)| t.clone())
    }

    /// Keeps a mirrored tag's state read at `generation`.
    pub(super) fn keep_tag(&self, key: &str, generation: u64, tag: CachedTag) {
        if let Ok(mut map) = self.tags.write() {
            map.insert(key.into(), (generation, tag), tag_cost(key), |k, _| {
                tag_cost(k)
            });
        }
    }

    /// The bytes of manifest `digest`, if held.
    pub(super) fn bytes(&self, digest: &Digest) -> Option<Bytes> {
        self.bytes.read().ok()?.map.get(digest).cloned()
    }

    /// Keeps the bytes of manifest `digest` if they are small and hash to it.
    pub(super) fn keep_bytes(&self, digest: &Digest, bytes: &Bytes) {
        if bytes.len() as u64 > MAX_CACHED_MANIFEST || Digest::of_bytes(bytes) != *digest {
            return;
        }
        let cost = bytes.len() + 128;
        if let Ok(mut map) = self.bytes.write() {
            map.insert(digest.clone(), bytes.clone(), cost, |_, b| b.len() + 128);
        }
    }
}

/// The key of a lookup of `reference` (a tag, or a digest's text) in `repo`.
pub(super) fn key(repo: &str, reference: &str) -> String {
    let mut k = String::with_capacity(repo.len() + 1 + reference.len());
    k.push_str(repo);
    k.push('\0');
    k.push_str(reference);
    k
}

/// The key of a lookup of `reference` in `repo`, built without formatting.
pub(super) fn reference_key(repo: &str, reference: &crate::oci::Reference) -> String {
    match reference {
        crate::oci::Reference::Tag(t) => key(repo, t.as_str()),
        crate::oci::Reference::Digest(d) => {
            let mut k = String::with_capacity(repo.len() + 8 + d.hex().len());
            k.push_str(repo);
            k.push_str("\0sha256:");
            k.push_str(d.hex());
            k
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(d: &Digest) -> ManifestInfo {
        ManifestInfo {
            digest: d.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 2,
        }
    }

    #[test]
    fn answers_only_at_their_generation() {
        let c = ManifestCache::default();
        let d = Digest::of_bytes(b"{}");
        c.keep_lookup("r\0t", 3, info(&d), vec![d.to_string()], 0);
        assert!(c.lookup("r\0t", 3).is_some());
        assert!(c.lookup("r\0t", 4).is_none(), "a write since: stale");
        assert!(c.lookup("r\0u", 3).is_none());
    }

    #[test]
    fn bytes_are_kept_only_when_they_hash_to_the_digest() {
        let c = ManifestCache::default();
        let d = Digest::of_bytes(b"{}");
        c.keep_bytes(&d, &Bytes::from_static(b"{ }"));
        assert!(c.bytes(&d).is_none());
        c.keep_bytes(&d, &Bytes::from_static(b"{}"));
        assert_eq!(c.bytes(&d).as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn reference_keys_are_the_reference_text() {
        let d = Digest::of_bytes(b"{}");
        let r = crate::oci::Reference::Digest(d.clone());
        assert_eq!(reference_key("a/b", &r), key("a/b", &d.to_string()));
        let t: crate::oci::Reference = "latest".parse().unwrap();
        assert_eq!(reference_key("a/b", &t), "a/b\0latest");
    }

    #[test]
    fn stays_within_its_budget() {
        let mut b = Bounded::new(1000);
        for i in 0..100u32 {
            b.insert(i, (), 100, |_, _| 100);
            assert!(b.held <= 1000);
            assert_eq!(b.held, b.map.len() * 100);
            assert!(b.map.contains_key(&i), "the new entry stays");
        }
        assert!(b.map.len() >= 7);
        b.insert(7, (), 2000, |_, _| 100);
        assert!(
            b.held <= 1000,
            "an entry larger than the budget is not kept"
        );
    }

    #[test]
    fn closure_touch_is_due_once_a_second() {
        let c = ManifestCache::default();
        let d = Digest::of_bytes(b"{}");
        c.keep_lookup("k", 1, info(&d), vec![], 10);
        let l = c.lookup("k", 1).unwrap();
        assert!(!l.touch_due(10));
        assert!(l.touch_due(11));
        assert!(!l.touch_due(11));
    }
}
