//! Where a target is known to hold a blob: a blob already sent to (or found
//! in) one repository of the target is mounted into the next one instead of
//! sent again (cross-repository mount), so shared base layers cross once.
//! Repositories are copied side by side, so one digest is handled by one
//! task at a time: the others wait and then mount what it sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::oci::Digest;

/// Most digests remembered per target; past it the memory starts afresh
/// (a forgotten digest only costs an upload instead of a mount).
const MAX_KNOWN: usize = 50_000;

/// digest → a repository of the target holding it; and the digests being
/// handled now.
#[derive(Default)]
pub(super) struct Mounts {
    known: Mutex<HashMap<String, String>>,
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Mounts {
    /// Notes that the target holds `digest` in `repo`.
    pub(super) fn remember(&self, digest: &Digest, repo: &str) {
        let key = digest.to_string();
        if let Ok(mut m) = self.known.lock() {
            if m.len() >= MAX_KNOWN && !m.contains_key(&key) {
                m.clear();
            }
            m.insert(key, repo.to_owned());
        }
    }

    /// A repository of the target known to hold `digest`.
    pub(super) fn source(&self, digest: &Digest) -> Option<String> {
        self.known.lock().ok()?.get(&digest.to_string()).cloned()
    }

    /// Waits until no other task handles `digest`, then handles it until the
    /// guard drops.
    pub(super) async fn handle(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = match self.busy.lock() {
            Ok(mut b) => {
                b.retain(|_, l| Arc::strong_count(l) > 1);
                b.entry(digest.to_string()).or_default().clone()
            }
            Err(_) => Arc::default(),
        };
        lock.lock_owned().await
    }
}
