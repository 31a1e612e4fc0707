//! Verifying user passwords. bcrypt is slow on purpose, so a verified credential
//! is remembered for a short, bounded time, keyed by a salted hash of the user
//! and password (never the password), and compared in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    dummy: String,
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
        let cost = entries
            .values()
            .next()
            .and_then(|h| h.get(4..6))
            .and_then(|c| c.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = bcrypt::hash(salt, cost).unwrap_or_default();
        Ok(Users {
            path: path.to_owned(),
            entries: RwLock::new(Arc::new(entries)),
            mtime: Mutex::new(mtime(path)),
            cache: Mutex::new(HashMap::new()),
            salt,
            dummy,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// True when the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file. On error the old users stay and the error is returned.
    pub fn reload(&self) -> Result<usize, HtpasswdError> {
        let entries = htpasswd::load(&self.path)?;
        let n = entries.len();
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

    /// Checks a password with bcrypt on a blocking thread, remembering successes.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &str) -> bool {
        if self.cached(user, password) {
            return true;
        }
        let hash = self.entries.read().ok().and_then(|e| e.get(user).cloned());
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let pw = password.to_owned();
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
        assert!(super::super::htpasswd::is_bcrypt(&users.dummy));
        assert!(
            users.dummy.starts_with("$2b$04$"),
            "dummy at the file's cost: {}",
            users.dummy
        );
        assert!(!users.cached("alice", "s3cret"));
        assert!(users.verify("alice", "s3cret").await);
        assert!(users.cached("alice", "s3cret"));
        assert!(!users.cached("alice", "wrong"));
        assert!(!users.verify("alice", "wrong").await);
        assert!(!users.verify("nobody", "s3cret").await);
        // Removing the user and reloading forgets the cached credential.
        std::fs::write(&path, "").unwrap();
        users.reload().unwrap();
        assert!(!users.verify("alice", "s3cret").await);
    }
}
