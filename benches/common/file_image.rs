//! An image whose blobs are files (layers, then a config naming them), and
//! its push with curl: what the S3 benchmarks pull and push, kept on disk so
//! that big layers never sit in memory. Written once for `s3` and `s3_storm`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{OCI_MANIFEST, Server, output, sha256_hex};

/// One blob of the image, as a file.
#[derive(Clone)]
pub struct Blob {
    /// The file holding its bytes.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub hex: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The image: its blobs (layers, then the config) and its manifest.
pub struct Image {
    /// Layers in order, then the config.
    pub blobs: Vec<Blob>,
    /// The OCI image manifest naming them.
    pub manifest: String,
}

impl Image {
    /// The image made of the layer `blobs`: writes a config naming them under `dir`
    /// and builds the manifest, so each benchmark only chooses its layers.
    pub fn with_layers(dir: &Path, mut blobs: Vec<Blob>) -> Image {
        let diff_ids: Vec<String> = blobs.iter().map(|b| format!("sha256:{}", b.hex)).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":{diff_ids:?}}}}}"#
        );
        let layers: Vec<String> = blobs
            .iter()
            .map(|b| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}"#,
                    b.hex, b.size
                )
            })
            .collect();
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, &config).unwrap();
        let cfg_hex = sha256_hex(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cfg_hex}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        blobs.push(Blob {
            path: cfg_path,
            hex: cfg_hex,
            size: config.len() as u64,
        });
        Image { blobs, manifest }
    }

    /// Blob bytes (what a pull downloads besides the manifest).
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Pushes one blob monolithically (POST, then one PUT with the whole file),
/// following wharf's relative and Distribution's absolute `Location`.
pub fn push_blob(s: &Server, repo: &str, b: &Blob) {
    let mut c = s.curl();
    c.args(["-sf", "-D", "-", "-o", "/dev/null", "-X", "POST"])
        .arg(format!("{}/v2/{repo}/blobs/uploads/", s.base));
    let head = output(c, "upload start");
    let loc = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .expect("Location");
    let loc = if loc.starts_with('/') {
        format!("{}{loc}", s.base)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let mut c = s.curl();
    c.args(["-sf", "-o", "/dev/null", "-X", "PUT", "-H", "Expect:"])
        .args(["-H", "Content-Type: application/octet-stream", "-T"])
        .arg(&b.path)
        .arg(format!("{loc}{sep}digest=sha256:{}", b.hex));
    output(c, "blob PUT");
}

/// Pushes the image as `repo:tag` (blobs one after the other, then the
/// manifest) and returns the wall time.
pub fn push_image(s: &Server, repo: &str, tag: &str, img: &Image) -> Duration {
    let t = Instant::now();
    for b in &img.blobs {
        push_blob(s, repo, b);
    }
    let mut c = s.curl();
    c.args(["-sf", "-o", "/dev/null", "-X", "PUT", "--data-binary"])
        .arg(&img.manifest)
        .args(["-H", &format!("Content-Type: {OCI_MANIFEST}")])
        .arg(format!("{}/v2/{repo}/manifests/{tag}", s.base));
    output(c, "manifest PUT");
    t.elapsed()
}
