//! Open upload sessions. The bytes and running hash live in a [`BlobWriter`] in
//! memory and `tmp/`; the `uploads` table records who started what and when, so
//! abandoned sessions can be expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::RepoName;

use super::StoreError;
use super::blobs::BlobWriter;

/// One open upload. Requests on the same session take turns through its mutex.
pub struct UploadSession {
    /// Repository the upload belongs to; the id is only valid with this name.
    pub repo: RepoName,
    /// The temp file being filled; `None` once finished or cancelled.
    pub writer: Option<BlobWriter>,
    /// Last time a request touched it, for expiry.
    pub touched: Instant,
}

/// Shared handle to a session.
pub type SessionHandle = Arc<tokio::sync::Mutex<UploadSession>>;

/// All open sessions by id, each with the repository it belongs to (kept outside
/// the session lock so ownership is checked even while a request holds it).
#[derive(Default)]
pub struct UploadTable {
    sessions: Mutex<HashMap<String, (RepoName, SessionHandle)>>,
}

impl UploadTable {
    /// Registers a session under a fresh unguessable id.
    pub fn insert(&self, repo: RepoName, writer: BlobWriter) -> Result<String, StoreError> {
        let id = super::random_hex()?;
        let session = UploadSession {
            repo: repo.clone(),
            writer: Some(writer),
            touched: Instant::now(),
        };
        self.sessions
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .insert(
                id.clone(),
                (repo, Arc::new(tokio::sync::Mutex::new(session))),
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
            .filter(|(owner, _)| owner == repo)
            .map(|(_, s)| s.clone()))
    }

    /// The session with this id whoever owns it (for expiry).
    fn get_any(&self, id: &str) -> Result<Option<SessionHandle>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .get(id)
            .map(|(_, s)| s.clone()))
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

    /// Ids of sessions idle longer than `expiry`. A session busy in a request is
    /// never reported (its lock is held).
    pub fn idle(&self, expiry: Duration) -> Result<Vec<String>, StoreError> {
        let map = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(map
            .iter()
            .filter(|(_, (_, s))| {
                s.try_lock()
                    .map(|g| g.touched.elapsed() >= expiry)
                    .unwrap_or(false)
            })
            .map(|(id, _)| id.clone())
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
