//! Content in use right now: a count per digest of open readers (a blob being
//! served) and downloads in flight. Eviction and gc never take a digest with a
//! count above zero. A [`InUseGuard`] counts one use and ends it on drop; an
//! entry goes when its count reaches zero, so the map is bounded by what is
//! being read at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::oci::Digest;

/// Uses per digest.
#[derive(Default)]
pub struct InUse {
    counts: Mutex<HashMap<String, usize>>,
}

/// One use of a digest (a reader, a download); ends when dropped.
pub struct InUseGuard {
    registry: Arc<InUse>,
    digest: String,
}

impl std::fmt::Debug for InUseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InUseGuard").field(&self.digest).finish()
    }
}

impl InUse {
    /// Counts one more use of `digest` until the guard drops.
    pub fn hold(self: &Arc<Self>, digest: &Digest) -> InUseGuard {
        let digest = digest.to_string();
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(digest.clone()).or_insert(0) += 1;
        }
        InUseGuard {
            registry: self.clone(),
            digest,
        }
    }

    /// Whether anything uses `digest` now. A poisoned lock answers yes: when
    /// in doubt, nothing is removed.
    pub fn contains(&self, digest: &str) -> bool {
        self.counts
            .lock()
            .map(|c| c.contains_key(digest))
            .unwrap_or(true)
    }

    /// Every digest in use now.
    pub fn digests(&self) -> Vec<String> {
        self.counts
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Digests in use (a gauge and a bound check in tests).
    pub fn len(&self) -> usize {
        self.counts.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether nothing is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for InUseGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.registry.counts.lock() {
            if let Some(n) = c.get_mut(&self.digest) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&self.digest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_entries_go_at_zero() {
        let r = Arc::new(InUse::default());
        let d = Digest::of_bytes(b"x");
        let a = r.hold(&d);
        let b = r.hold(&d);
        assert!(r.contains(&d.to_string()));
        drop(a);
        assert!(r.contains(&d.to_string()), "one reader left");
        drop(b);
        assert!(!r.contains(&d.to_string()));
        assert!(r.is_empty(), "no entry stays behind");
    }
}
