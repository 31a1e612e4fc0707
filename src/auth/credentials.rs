//! Verifying user passwords. bcrypt is slow on purpose, so a verified credential
//! is remembered for a short, bounded time, keyed by a salted hash of the user
//! and password (never the password), and compared in constant time. Requests
//! that present the same credential at once share one bcrypt run, and an unknown
//! user costs the same bcrypt work as a known one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use super::htpasswd::{self, HtpasswdError};

/// How long a verified credential is trusted without bcrypt.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most credentials remembered at once.
const CACHE_MAX: usize = 4096;

struct Cached {
    key: [u8; 32],
    until: Instant,
}

/// The users of an htpasswd file, reloadable while serving.
pub struct Users {
    path: PathBuf,
    entries: RwLock<Arc<HashMap<String, String>>>,
    mtime: Mutex<Option<SystemTime>>,
    cache: Mutex<HashMap<String, Cached>>,
    salt: [u8; 32],
    /// A bcrypt hash of random bytes at the file's cost: unknown users are checked
    /// against it so their answer takes as long as a known user's.
    dummy: RwLock<Arc<str>>,
    /// Verifications in flight by credential key: the same credential presented
    /// by many requests at once is checked once.
    verifying: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// bcrypt verifications run (a metric: what login attempts cost).
    bcrypt_runs: AtomicU64,
}

/// Credentials in the verifying map beyond which entries nobody holds are
/// swept (the map normally holds only credentials being verified right now).
const VERIFYING_SWEEP: usize = 1024;

/// The cost of the dummy hash: the cost most users' hashes have (so an unknown
/// user takes as long as a typical known one), or, for an empty file, the cost
/// `wharf user add` writes.
fn dummy_cost(entries: &HashMap<String, String>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for h in entries.values() {
        if let Some(c) = h.get(4..6).and_then(|c| c.parse::<u32>().ok()) {
            *counts.entry(c).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(cost, n)| (*n, *cost))
        .map(|(c, _)| c)
        .unwrap_or(htpasswd::DEFAULT_COST)
}

/// A bcrypt hash of `salt` at `cost` (never empty: a failed hash falls back to
/// the default cost, which cannot fail).
fn dummy_hash(salt: [u8; 32], cost: u32) -> Arc<str> {
    bcrypt::hash(salt, cost)
        .or_else(|_| bcrypt::hash(salt, htpasswd::DEFAULT_COST))
        .unwrap_or_default()
        .into()
}

/// Equal-length byte comparison whose time does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Users {
    /// Loads the file; a bad line is an error naming it.
    pub fn load(path: &Path) -> Result<Users, HtpasswdError> {
        let entries = htpasswd::load(path)?;
        let mut salt = [0u8; 32];
        // Without randomness the salt is zero: the cache key is still a hash.
        let _ = getrandom::fill(&mut salt);
        let dummy = dummy_hash(salt, dummy_cost(&entries));
        Ok(Users {
            path: path.to_owned(),
            entries: RwLock::new(Arc::new(entries)),
            mtime: Mutex::new(mtime(path)),
            cache: Mutex::new(HashMap::new()),
            salt,
            dummy: RwLock::new(dummy),
            verifying: Mutex::new(HashMap::new()),
            bcrypt_runs: AtomicU64::new(0),
        })
    }

    /// Whether `user` is in the file (a web session of a user since removed
    /// ends at once).
    pub fn contains(&self, user: &str) -> bool {
        self.entries.read().is_ok_and(|e| e.contains_key(user))
    }

    /// A short fingerprint of `user`'s line in the file (keyed with this
    /// process's salt, so it says nothing about the hash): a web session
    /// carries it, and a changed password changes it, which ends the
    /// sessions logged in with the old one. `None` for an unknown user.
    pub fn stamp(&self, user: &str) -> Option<String> {
        use sha2::Digest as _;
        let entries = self.entries.read().ok()?;
        let hash = entries.get(user)?;
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        Some(
            h.finalize()[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// True when the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// bcrypt verifications run since start.
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// The cost of the hash unknown users are checked against.
    pub fn dummy_cost(&self) -> Option<u32> {
        let d = self.dummy.read().ok()?.clone();
        d.get(4..6)?.parse().ok()
    }

    /// Re-reads the file. On error the old users stay and the error is returned.
    /// Runs bcrypt when the users' cost changed: call it off the runtime threads.
    pub fn reload(&self) -> Result<usize, HtpasswdError> {
        let entries = htpasswd::load(&self.path)?;
        let n = entries.len();
        let cost = dummy_cost(&entries);
        if self.dummy_cost() != Some(cost) {
            let dummy = dummy_hash(self.salt, cost);
            if let Ok(mut d) = self.dummy.write() {
                *d = dummy;
            }
        }
        if let Ok(mut e) = self.entries.write() {
            *e = Arc::new(entries);
        }
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        if let Ok(mut m) = self.mtime.lock() {
            *m = mtime(&self.path);
        }
        Ok(n)
    }

    /// Reloads if the file's modification time moved; true if it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, HtpasswdError> {
        let now = mtime(&self.path);
        let changed = self.mtime.lock().map(|m| *m != now).unwrap_or(false);
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0u8]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether the credential was verified recently (no bcrypt needed).
    pub fn cached(&self, user: &str, password: &str) -> bool {
        let key = self.cache_key(user, password);
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        cache
            .get(user)
            .is_some_and(|c| c.until > Instant::now() && constant_time_eq(&c.key, &key))
    }

    /// Waits until no other request is verifying the same credential, so that
    /// many requests presenting it at once cost one bcrypt run: after the wait,
    /// [`Users::cached`] answers for a credential that verified. The map holds
    /// credentials being verified right now, and at most `VERIFYING_SWEEP`
    /// left by waits abandoned mid-way.
    pub async fn one_at_a_time(&self, user: &str, password: &str) -> CredentialTurn<'_> {
        let key = self.cache_key(user, password);
        let lock = match self.verifying.lock() {
            Ok(mut map) => {
                // A wait abandoned right after the turn before it ended (the
                // client left) leaves an entry nobody holds: swept here.
                if map.len() >= VERIFYING_SWEEP {
                    map.retain(|_, l| Arc::strong_count(l) > 1);
                }
                map.entry(key).or_default().clone()
            }
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        let guard = lock.clone().lock_owned().await;
        CredentialTurn {
            users: self,
            key,
            lock,
            _guard: guard,
        }
    }

    /// Checks a password with bcrypt on a blocking thread, remembering successes.
    /// An unknown user is checked against a dummy hash of the same cost.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &str) -> bool {
        if self.cached(user, password) {
            return true;
        }
        let hash: Option<Arc<str>> = self
            .entries
            .read()
            .ok()
            .and_then(|e| e.get(user).map(|h| Arc::from(h.as_str())));
        let known = hash.is_some();
        let Some(hash) = hash.or_else(|| self.dummy.read().ok().map(|d| d.clone())) else {
            return false;
        };
        let pw = password.to_owned();
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && known;
        if ok {
            let key = self.cache_key(user, password);
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= CACHE_MAX {
                    let now = Instant::now();
                    cache.retain(|_, c| c.until > now);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(
                    user.to_owned(),
                    Cached {
                        key,
                        until: Instant::now() + CACHE_TTL,
                    },
                );
            }
        }
        ok
    }
}

/// The right to verify one credential; the next request presenting it waits
/// until this drops.
pub struct CredentialTurn<'a> {
    users: &'a Users,
    key: [u8; 32],
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for CredentialTurn<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.users.verifying.lock() {
            // The map's, ours and our guard's make three: forget the entry only
            // when no other request holds it.
            if Arc::strong_count(&self.lock) <= 3 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn verifies_caches_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash_with_result("s3cret", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
        let users = Arc::new(Users::load(&path).unwrap());
        assert_eq!(users.dummy_cost(), Some(4), "dummy at the file's cost");
        assert!(!users.cached("alice", "s3cret"));
        assert!(users.verify("alice", "s3cret").await);
        assert!(users.cached("alice", "s3cret"));
        assert!(!users.cached("alice", "wrong"));
        assert!(!users.verify("alice", "wrong").await);
        assert!(!users.verify("nobody", "s3cret").await);
        // Removing the user and reloading forgets the cached credential, and
        // the dummy follows the cost `wharf user add` writes.
        std::fs::write(&path, "").unwrap();
        users.reload().unwrap();
        assert!(!users.verify("alice", "s3cret").await);
        assert_eq!(users.dummy_cost(), Some(htpasswd::DEFAULT_COST));
    }

    #[test]
    fn unknown_users_cost_what_known_users_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        // An empty file at start: the dummy has the cost `wharf user add` uses,
        // not bcrypt's library default (12), which made unknown users 4x slower.
        std::fs::write(&path, "").unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.dummy_cost(), Some(htpasswd::DEFAULT_COST));
        assert_ne!(htpasswd::DEFAULT_COST, bcrypt::DEFAULT_COST);
        // Users appear at another cost: the reload follows the majority.
        let h = |c| {
            bcrypt::hash_with_result("pw", c)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY)
        };
        std::fs::write(&path, format!("a:{}\nb:{}\nc:{}\n", h(5), h(5), h(4))).unwrap();
        users.reload().unwrap();
        assert_eq!(users.dummy_cost(), Some(5));
        let loaded = Users::load(&path).unwrap();
        assert_eq!(loaded.dummy_cost(), Some(5));
    }

    #[tokio::test]
    async fn one_credential_verified_at_a_time_and_the_map_empties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash_with_result("pw", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
        let users = Arc::new(Users::load(&path).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let u = users.clone();
            tasks.push(tokio::spawn(async move {
                let _turn = u.one_at_a_time("alice", "pw").await;
                u.verify("alice", "pw").await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(users.bcrypt_runs(), 1, "one bcrypt for 20 identical logins");
        assert!(users.verifying.lock().unwrap().is_empty());
    }

    /// A request waiting its turn whose client leaves (its future dropped)
    /// right after the turn before it ended held the last reference but one:
    /// every such credential stayed in the map for good. Abandoned entries are
    /// swept, so the map stays bounded whatever clients do.
    #[tokio::test]
    async fn abandoned_waits_do_not_grow_the_map() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, "").unwrap();
        let users = Users::load(&path).unwrap();
        for i in 0..(3 * VERIFYING_SWEEP) {
            let pw = format!("guess-{i}");
            let holder = users.one_at_a_time("alice", &pw).await;
            let mut waiter = Box::pin(users.one_at_a_time("alice", &pw));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            drop(holder);
            drop(waiter);
        }
        let left = users.verifying.lock().unwrap().len();
        assert!(left <= VERIFYING_SWEEP, "{left} credentials remembered");
    }
}
