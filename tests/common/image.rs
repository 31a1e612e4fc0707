//! Builds real images for tests: tar layers, OCI configs and manifests, and OCI
//! layouts on disk that skopeo can copy.

use std::path::Path;

use super::digest;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A ustar archive of regular files (what docker can unpack as a layer, and
/// the container format of `docker load`).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let put = |h: &mut [u8; 512], at: usize, s: &str| {
            h[at..at + s.len()].copy_from_slice(s.as_bytes())
        };
        put(&mut h, 100, "0000644\0");
        put(&mut h, 108, "0000000\0");
        put(&mut h, 116, "0000000\0");
        put(&mut h, 124, &format!("{:011o}\0", content.len()));
        put(&mut h, 136, "00000000000\0");
        h[156] = b'0';
        put(&mut h, 257, "ustar\0");
        put(&mut h, 263, "00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        put(&mut h, 148, &format!("{sum:06o}\0 "));
        out.extend_from_slice(&h);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A one-file layer.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    tar_of(&[(name, content)])
}

/// A `docker load` archive of `img` tagged `repo_tag`.
pub fn docker_archive(img: &Image, repo_tag: &str) -> Vec<u8> {
    let cfg_name = format!("{}.json", &digest(&img.config)[7..]);
    let layer_names: Vec<String> = img
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", &digest(l)[7..]))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": cfg_name, "RepoTags": [repo_tag], "Layers": layer_names
    }]))
    .unwrap();
    let mut files: Vec<(&str, &[u8])> =
        vec![("manifest.json", &manifest), (&cfg_name, &img.config)];
    for (n, l) in layer_names.iter().zip(&img.layers) {
        files.push((n, l));
    }
    tar_of(&files)
}

/// An image: config + layers + manifest, all as bytes.
pub struct Image {
    /// Config blob.
    pub config: Vec<u8>,
    /// Layer blobs (uncompressed tars).
    pub layers: Vec<Vec<u8>>,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
}

impl Image {
    /// An amd64 image from layer bytes.
    pub fn new(layers: Vec<Vec<u8>>) -> Image {
        Image::for_platform(layers, "amd64")
    }

    /// An image for one architecture.
    pub fn for_platform(layers: Vec<Vec<u8>>, arch: &str) -> Image {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {}
        }))
        .unwrap();
        let layer_descs: Vec<_> = layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(l), "size": l.len()}))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": layer_descs
        }))
        .unwrap();
        Image {
            config,
            layers,
            manifest,
        }
    }

    /// Every blob with its digest, config first.
    pub fn blobs(&self) -> Vec<(String, &[u8])> {
        let mut v = vec![(digest(&self.config), self.config.as_slice())];
        v.extend(self.layers.iter().map(|l| (digest(l), l.as_slice())));
        v
    }
}

/// An index over platform manifests.
pub fn index(images: &[(&Image, &str)]) -> Vec<u8> {
    let manifests: Vec<_> = images
        .iter()
        .map(|(i, arch)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": digest(&i.manifest), "size": i.manifest.len(),
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
    )
    .unwrap()
}

fn write_blob(dir: &Path, b: &[u8]) {
    let d = digest(b);
    std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
}

/// Writes an OCI layout at `dir` whose `index.json` names `top` (a manifest or an
/// index of `images`) as `tag`. Returns the digest of `top`.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    images: &[&Image],
    top: &[u8],
    top_type: &str,
) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for img in images {
        for (_, b) in img.blobs() {
            write_blob(dir, b);
        }
        write_blob(dir, &img.manifest);
    }
    write_blob(dir, top);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": top_type, "digest": digest(top), "size": top.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag}
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digest(top)
}
