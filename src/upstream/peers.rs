//! LAN peers: other wharfs asked first on a blob miss. All peers get a short
//! HEAD in parallel; the first that has the blob serves the GET. A request
//! carrying [`PEER_HEADER`] is answered from the peer's own store only, so two
//! peers that list each other never loop.

use std::time::Duration;

use tokio::task::JoinSet;

use super::breaker::Breaker;
use crate::oci::Digest;

/// Marks a request as coming from a peer: answer from the store only.
pub const PEER_HEADER: &str = "x-wharf-peer";
/// How long a peer may take to answer the HEAD.
pub const PEER_HEAD_TIMEOUT: Duration = Duration::from_millis(1500);

struct Peer {
    base: String,
    breaker: Breaker,
}

/// The configured peers.
pub struct Peers {
    peers: Vec<Peer>,
    http: reqwest::Client,
}

impl Peers {
    /// Clients for `urls`.
    pub fn new(urls: &[String]) -> Result<Peers, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .read_timeout(super::client::READ_TIMEOUT)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION"), " peer"))
            .build()?;
        Ok(Peers {
            peers: urls
                .iter()
                .map(|u| Peer {
                    base: u.trim_end_matches('/').to_owned(),
                    breaker: Breaker::default(),
                })
                .collect(),
            http,
        })
    }

    /// True without peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Stops asking the peer at `base` for a while (it sent bad bytes).
    pub fn distrust(&self, base: &str) {
        if let Some(p) = self.peers.iter().find(|p| p.base == base) {
            p.breaker.trip();
        }
    }

    /// Asks every healthy peer whether it has `digest` in `repo` (the canonical
    /// local name) and starts the GET from the first that does.
    pub async fn fetch(&self, repo: &str, digest: &Digest) -> Option<(String, reqwest::Response)> {
        let mut heads = JoinSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.breaker.admit().is_err() {
                continue;
            }
            let url = format!("{}/v2/{repo}/blobs/{digest}", p.base);
            let req = self
                .http
                .head(url)
                .header(PEER_HEADER, "1")
                .timeout(PEER_HEAD_TIMEOUT);
            heads.spawn(async move { (i, req.send().await.map(|r| r.status())) });
        }
        let mut winner = None;
        while let Some(joined) = heads.join_next().await {
            let Ok((i, result)) = joined else { continue };
            match result {
                Ok(s) if s.is_success() => {
                    self.peers[i].breaker.record(true);
                    winner = Some(i);
                    break;
                }
                Ok(_) => self.peers[i].breaker.record(true),
                Err(_) => self.peers[i].breaker.record(false),
            }
        }
        heads.abort_all();
        let p = &self.peers[winner?];
        let resp = self
            .http
            .get(format!("{}/v2/{repo}/blobs/{digest}", p.base))
            .header(PEER_HEADER, "1")
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())?;
        Some((p.base.clone(), resp))
    }
}
