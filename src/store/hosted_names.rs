//! Hosted names across nodes: the names other nodes on the bucket took
//! pushes for (`hosted/<name>/_` records) become hosted here too, so routing,
//! the catalog and the web page agree on every node and a name pushed on
//! one node is never sent to the default upstream by another.

use super::meta::Origin;
use super::{Store, StoreError};
use crate::oci::RepoName;

impl Store {
    /// Before a request for `repo` is routed: a name this node does not know
    /// as hosted is looked up in the records (at most once per [`TAG_TTL`]
    /// per name), so a name another node just pushed to for the first time
    /// is routed as hosted here at once, never to the default upstream
    /// (which may hold another image under that name). A bucket that does
    /// not answer leaves routing as it is, with a warning.
    pub async fn learn_hosted_name(&self, repo: &RepoName) {
        let Some(records) = &self.records else {
            return;
        };
        if self.is_pushed_repo(repo.as_str())
            || crate::oci::routing::NameFacts::is_mirrored(self, repo.as_str())
            || !self.tag_checks.claim(&format!("hosted/{repo}"))
        {
            return;
        }
        match records.is_hosted(repo).await {
            Ok(false) => {}
            Ok(true) => {
                let name = repo.to_string();
                let written = self
                    .meta
                    .write(move |txn| {
                        super::blob_ops::ensure_repo(txn, &name, Origin::Pushed)?;
                        Ok(())
                    })
                    .await;
                match written {
                    Ok(()) => self.mark_pushed(repo),
                    Err(e) => {
                        tracing::warn!(repo = %repo, error = %e, "could not record a name another node hosts")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "could not ask the bucket whether another node hosts this name")
            }
        }
    }

    /// Learns the names other nodes hold pushed content under (the
    /// `hosted/` records), so routing, the catalog and the web page treat
    /// them as hosted here too; how many were new. A name this node mirrors
    /// stays mirrored (and is logged). Start-up calls it before serving (a
    /// node on an empty data directory knows every hosted name), then it
    /// runs every few seconds.
    pub async fn learn_hosted_names(&self) -> Result<usize, StoreError> {
        let Some(records) = &self.records else {
            return Ok(0);
        };
        let mut fresh = Vec::new();
        for name in records.hosted().await? {
            if self.is_pushed_repo(&name) {
                continue;
            }
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            if crate::oci::routing::NameFacts::is_mirrored(self, &name) {
                tracing::warn!(repo = %name, "another node holds pushed content under a name this node mirrors; it stays mirrored here");
                continue;
            }
            fresh.push(repo);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = fresh.iter().map(ToString::to_string).collect();
        self.meta
            .write(move |txn| {
                for n in &names {
                    super::blob_ops::ensure_repo(txn, n, Origin::Pushed)?;
                }
                Ok(())
            })
            .await?;
        for repo in &fresh {
            self.mark_pushed(repo);
        }
        Ok(fresh.len())
    }
}
