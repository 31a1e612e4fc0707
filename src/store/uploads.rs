//! Open upload sessions. The bytes and running hash live in a [`BlobWriter`] in
//! memory and `tmp/`; the `uploads` table records who started what and when, so
//! abandoned sessions can be expired.
//!
//! Sessions are bounded: a session's temp file is created at its first byte and
//! closed between requests (an idle session holds no file descriptor), sessions
//! are capped per client address and in total, and one that never received a
//! byte expires within minutes rather than after `[gc] upload_expiry`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::RepoName;

use super::BlobWriter;
use super::StoreError;

/// Most upload sessions one client address may hold open. A pushing client
/// opens a handful at a time (dockerd uploads 5 layers at once by default,
/// containerd and skopeo similar), so 64 leaves room for several pushes behind
/// one NAT address, while one client cannot take the whole daemon's share.
pub const MAX_UPLOADS_PER_CLIENT: usize = 64;

/// Most upload sessions open at once, all clients together: 64 busy clients at
/// their cap. Each session costs a little memory (and a file descriptor only
/// while one of its requests runs), so this bounds what abandoned sessions hold.
pub const MAX_UPLOADS: usize = 4096;

/// How long a session that never received a byte lives after its last request
/// (never longer than `[gc] upload_expiry`). Real clients send their first
/// chunk right after the POST; a session still empty after this was abandoned
/// or is someone hoarding sessions against the caps.
pub const UNWRITTEN_UPLOAD_EXPIRY: Duration = Duration::from_secs(120);

/// `Retry-After` for a refused session: finished and cancelled sessions free
/// their slot at once, abandoned empty ones within [`UNWRITTEN_UPLOAD_EXPIRY`].
const RETRY_AFTER_SECS: u64 = 10;

/// One open upload. Requests on the same session take turns through its mutex.
pub struct UploadSession {
    /// Repository the upload belongs to; the id is only valid with this name.
    pub repo: RepoName,
    /// The temp file being filled; `None` once finished or cancelled.
    pub writer: Option<BlobWriter>,
    /// Last time a request touched it, for expiry.
    pub touched: Instant,
}

impl UploadSession {
    /// Ends a request on the session: everything received is written out and
    /// the file closed, so the session holds no file descriptor until its next
    /// request (the running hash stays in memory).
    pub async fn park(&mut self) -> Result<(), StoreError> {
        match self.writer.as_mut() {
            Some(w) => w.park().await,
            None => Ok(()),
        }
    }

    /// Whether any byte has arrived.
    fn received(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_empty())
    }
}

/// Shared handle to a session.
pub type SessionHandle = Arc<tokio::sync::Mutex<UploadSession>>;

/// A session with what is checked without its lock: the repository it belongs
/// to and the client address it counts against.
struct Entry {
    repo: RepoName,
    client: IpAddr,
    session: SessionHandle,
}

/// All open sessions by id.
#[derive(Default)]
pub struct UploadTable {
    sessions: Mutex<HashMap<String, Entry>>,
}

impl UploadTable {
    /// Registers a session of `client` under a fresh unguessable id, unless the
    /// client or the daemon is at its cap.
    pub fn insert(
        &self,
        repo: RepoName,
        client: IpAddr,
        writer: BlobWriter,
    ) -> Result<String, StoreError> {
        let id = super::random_hex()?;
        let mut map = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        if map.len() >= MAX_UPLOADS {
            return Err(StoreError::TooManyUploads {
                scope: "on this registry",
                limit: MAX_UPLOADS,
                retry_after: RETRY_AFTER_SECS,
            });
        }
        if map.values().filter(|e| e.client == client).count() >= MAX_UPLOADS_PER_CLIENT {
            return Err(StoreError::TooManyUploads {
                scope: "from this client address",
                limit: MAX_UPLOADS_PER_CLIENT,
                retry_after: RETRY_AFTER_SECS,
            });
        }
        let session = UploadSession {
            repo: repo.clone(),
            writer: Some(writer),
            touched: Instant::now(),
        };
        map.insert(
            id.clone(),
            Entry {
                repo,
                client,
                session: Arc::new(tokio::sync::Mutex::new(session)),
            },
        );
        Ok(id)
    }

    /// The session with this id, if open and owned by `repo`.
    pub fn get(&self, repo: &RepoName, id: &str) -> Result<Option<SessionHandle>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .get(id)
            .filter(|e| e.repo == *repo)
            .map(|e| e.session.clone()))
    }

    /// The session with this id whoever owns it (for expiry).
    fn get_any(&self, id: &str) -> Result<Option<SessionHandle>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .get(id)
            .map(|e| e.session.clone()))
    }

    /// Drops the data of session `id` and forgets it.
    pub async fn discard(&self, id: &str) -> Result<(), StoreError> {
        if let Some(s) = self.get_any(id)? {
            s.lock().await.writer = None;
        }
        self.remove(id)
    }

    /// Forgets a session (its writer drops the temp file when the last handle goes).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .remove(id);
        Ok(())
    }

    /// Ids of sessions idle longer than `expiry`, or than `unwritten` when they
    /// never received a byte. A session busy in a request is never reported
    /// (its lock is held).
    pub fn idle(&self, expiry: Duration, unwritten: Duration) -> Result<Vec<String>, StoreError> {
        let map = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(map
            .iter()
            .filter(|(_, e)| {
                e.session
                    .try_lock()
                    .map(|s| {
                        let idle = s.touched.elapsed();
                        idle >= expiry || (!s.received() && idle >= unwritten)
                    })
                    .unwrap_or(false)
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Idle sessions still holding an open file or unwritten bytes (a request
    /// that ended without parking, e.g. cancelled mid-body), for the expiry
    /// pass to park.
    pub fn unparked(&self) -> Result<Vec<SessionHandle>, StoreError> {
        let map = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(map
            .values()
            .filter(|e| {
                e.session
                    .try_lock()
                    .map(|s| s.writer.as_ref().is_some_and(|w| !w.is_parked()))
                    .unwrap_or(false)
            })
            .map(|e| e.session.clone())
            .collect())
    }

    /// Number of open sessions (a metric).
    pub fn len(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no upload is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
