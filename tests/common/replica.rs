//! Replication tests' view of both sides: pushing images (and an index) to a
//! source wharf, and reading a target registry back (a wharf with token auth,
//! or Distribution with Basic) to compare digests and bytes.

use reqwest::Method;

use super::image::{Image, OCI_INDEX, OCI_MANIFEST, index};
use super::{Wharf, digest, http};

/// Everything a pulling client accepts.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Pushes `img` to `repo:tag` on a wharf without users; returns the
/// manifest digest.
pub async fn push(w: &Wharf, repo: &str, tag: &str, img: &Image) -> String {
    Endpoint(w.base.clone()).push(repo, tag, img).await
}

/// Puts a manifest on a wharf without users.
pub async fn put(w: &Wharf, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    Endpoint(w.base.clone())
        .put(repo, reference, media_type, body)
        .await;
}

/// A wharf without users by its base URL (in-process or a child process).
pub struct Endpoint(pub String);

impl Endpoint {
    /// Pushes a blob (POST + PUT).
    pub async fn push_blob(&self, repo: &str, data: &[u8]) {
        let r = http()
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let r = http()
            .put(format!("{}{loc}?digest={}", self.0, digest(data)))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// Puts a manifest.
    pub async fn put(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let r = http()
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.0))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    /// Pushes `img` as `repo:tag`; returns the manifest digest.
    pub async fn push(&self, repo: &str, tag: &str, img: &Image) -> String {
        for (_, b) in img.blobs() {
            self.push_blob(repo, b).await;
        }
        self.put(repo, tag, OCI_MANIFEST, &img.manifest).await;
        digest(&img.manifest)
    }
}

/// Pushes each platform image by digest and an index of them as `repo:tag`;
/// returns the index digest.
pub async fn push_index(w: &Wharf, repo: &str, tag: &str, images: &[(&Image, &str)]) -> String {
    let a = Endpoint(w.base.clone());
    for (img, _) in images {
        for (_, b) in img.blobs() {
            a.push_blob(repo, b).await;
        }
        put(w, repo, &digest(&img.manifest), OCI_MANIFEST, &img.manifest).await;
    }
    let idx = index(images);
    put(w, repo, tag, OCI_INDEX, &idx).await;
    digest(&idx)
}

/// How the tests read a target registry.
pub enum Remote {
    /// A wharf with token auth and anonymous pulls (an anonymous token per
    /// request).
    Wharf(String),
    /// Distribution with htpasswd: Basic credentials.
    Basic(String, String, String),
}

impl Remote {
    fn base(&self) -> &str {
        match self {
            Remote::Wharf(b) | Remote::Basic(b, _, _) => b,
        }
    }

    async fn req(&self, m: Method, repo: &str, path: &str) -> reqwest::RequestBuilder {
        let r = http().request(m, format!("{}{path}", self.base()));
        match self {
            Remote::Basic(_, u, p) => r.basic_auth(u, Some(p)),
            Remote::Wharf(b) => {
                let t: serde_json::Value = http()
                    .get(format!("{b}/token"))
                    .query(&[
                        ("service", "wharf"),
                        ("scope", &format!("repository:{repo}:pull")),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                r.bearer_auth(t["token"].as_str().unwrap_or_default())
            }
        }
    }

    /// The digest `repo:reference` has on the target, if it has it.
    pub async fn digest(&self, repo: &str, reference: &str) -> Option<String> {
        let r = self
            .req(
                Method::GET,
                repo,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .await
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        assert_eq!(r.status(), 200, "GET {repo}:{reference}");
        Some(digest(&r.bytes().await.unwrap()))
    }

    /// A blob's bytes on the target.
    pub async fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = self
            .req(Method::GET, repo, &format!("/v2/{repo}/blobs/{digest}"))
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET blob {digest} of {repo}");
        r.bytes().await.unwrap().to_vec()
    }

    /// Waits until `repo:reference` is `want` on the target (None: gone).
    pub async fn wait_for(&self, repo: &str, reference: &str, want: Option<&str>, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let got = self.digest(repo, reference).await;
            if got.as_deref() == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{repo}:{reference} on the target is {got:?}, expected {want:?} within {secs}s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The `[[replicate]]` section copying `repos` to `to` as `user` (password
/// in `pw_file`), with `extra` keys.
pub fn rule(repos: &str, to: &str, user: &str, pw_file: &std::path::Path, extra: &str) -> String {
    format!(
        "[[replicate]]\nrepos = [{repos:?}]\nto = {to:?}\nusername = {user:?}\npassword_file = {:?}\n{extra}\n",
        pw_file.display().to_string()
    )
}
