//! What writes named while a gc or eviction pass was between its mark (a read
//! snapshot) and its sweep (a write job). Manifest rows, blob links and mounts
//! note the digests they name inside their write job; a pass's sweep, running
//! in the same single writer thread, skips every candidate noted since its
//! mark. Writers run one at a time, so a write either committed before the
//! sweep (and is noted) or runs after it (and finds the `blobs` row gone).
//!
//! A write that noted before the watch existed must be in the mark's
//! snapshot: [`Store::watch_changes`] starts the watch, then waits for the
//! writer to finish every batch already applied (an empty write job queued
//! behind them), and only then may the snapshot be taken.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

/// The noticeboard: one set per pass in progress. Shared (an `Arc`) so write
/// jobs can carry it.
#[derive(Default)]
pub(super) struct Changes {
    watchers: Mutex<Vec<Weak<Mutex<HashSet<String>>>>>,
}

/// One pass's view of what was named since its mark; stops on drop.
pub(super) struct ChangeWatch(Arc<Mutex<HashSet<String>>>);

impl Changes {
    /// Starts recording (call before the mark's snapshot is taken).
    pub(super) fn watch(&self) -> ChangeWatch {
        let set = Arc::new(Mutex::new(HashSet::new()));
        if let Ok(mut w) = self.watchers.lock() {
            w.push(Arc::downgrade(&set));
        }
        ChangeWatch(set)
    }

    /// Notes `digests` for every pass in progress (inside a write job; a job
    /// that fails after noting only makes a pass keep more).
    pub(super) fn note<'a>(&self, digests: impl IntoIterator<Item = &'a str>) {
        let Ok(mut w) = self.watchers.lock() else {
            return;
        };
        w.retain(|s| s.strong_count() > 0);
        if w.is_empty() {
            return;
        }
        let sets: Vec<_> = w.iter().filter_map(Weak::upgrade).collect();
        drop(w);
        let digests: Vec<&str> = digests.into_iter().collect();
        for s in sets {
            if let Ok(mut s) = s.lock() {
                s.extend(digests.iter().map(|d| (*d).to_owned()));
            }
        }
    }
}

impl ChangeWatch {
    /// Whether a write named `digest` since the watch started. A poisoned lock
    /// answers yes (keep it).
    pub(super) fn contains(&self, digest: &str) -> bool {
        self.0.lock().map(|s| s.contains(digest)).unwrap_or(true)
    }
}

impl super::Store {
    /// Starts a pass's watch; when this returns, every write applied before
    /// the watch existed has committed, so a read snapshot taken now holds it.
    pub(super) async fn watch_changes(&self) -> Result<ChangeWatch, super::StoreError> {
        let watch = self.changes.watch();
        self.meta.write(|_| Ok(())).await?;
        Ok(watch)
    }

    /// The noticeboard, for a write job to carry.
    pub(super) fn changes_handle(&self) -> std::sync::Arc<Changes> {
        self.changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watches_alive_at_the_write_see_it() {
        let c = Changes::default();
        c.note(["before"]);
        let w = c.watch();
        c.note(["during"]);
        assert!(w.contains("during"));
        assert!(!w.contains("before"));
        drop(w);
        c.note(["after"]);
        assert!(c.watchers.lock().unwrap().is_empty(), "dead watches go");
    }
}
