//! Writes a `registry:2` storage tree (`docker/registry/v2/`) by hand, for
//! import tests that need trees Distribution itself would never write.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::common::digest;
use crate::common::image::Image;

/// The `docker/registry/v2` directory of a storage root.
pub struct R2Tree(pub PathBuf);

impl R2Tree {
    /// The tree under storage root `root` (created).
    pub fn under(root: &Path) -> R2Tree {
        let t = R2Tree(root.join("docker/registry/v2"));
        std::fs::create_dir_all(t.0.join("blobs/sha256")).unwrap();
        std::fs::create_dir_all(t.0.join("repositories")).unwrap();
        t
    }

    /// Stores a blob's `data` file; its digest.
    pub fn blob(&self, b: &[u8]) -> String {
        let d = digest(b);
        let hex = &d[7..];
        let p = self.0.join("blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("data"), b).unwrap();
        d
    }

    /// Writes `dir/link` holding `d`.
    pub fn link(&self, dir: &Path, d: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("link"), d).unwrap();
    }

    /// A repository's directory.
    pub fn repo(&self, repo: &str) -> PathBuf {
        self.0.join("repositories").join(repo)
    }

    /// Links blob `d` into `repo` (`_layers`).
    pub fn layer(&self, repo: &str, d: &str) {
        self.link(&self.repo(repo).join("_layers/sha256").join(&d[7..]), d);
    }

    /// Points `repo:tag` at digest `d` (a revision link and the tag's `current/link`).
    pub fn tag(&self, repo: &str, tag: &str, d: &str) {
        let r = self.repo(repo).join("_manifests");
        self.link(&r.join("revisions/sha256").join(&d[7..]), d);
        self.link(&r.join("tags").join(tag).join("current"), d);
    }

    /// Stores manifest bytes `m` as `repo:tag`.
    pub fn manifest(&self, repo: &str, tag: &str, m: &[u8]) {
        let d = self.blob(m);
        self.tag(repo, tag, &d);
    }

    /// Stores a whole image as `repo:tag`.
    pub fn image(&self, repo: &str, tag: &str, img: &Image) {
        for (_, b) in img.blobs() {
            let d = self.blob(b);
            self.layer(repo, &d);
        }
        self.manifest(repo, tag, &img.manifest);
    }
}
