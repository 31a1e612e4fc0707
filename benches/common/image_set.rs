//! A set of images that share a base, written as files and pushed to a
//! registry: what the replication bench copies. Layers are real gzip streams
//! (stored deflate blocks over pseudo-random bytes) with the `tar+gzip` media
//! type, so that containers/image passes them through as they are instead of
//! compressing them on the way (it sniffs the bytes): every copier sends the
//! same digests.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{OCI_MANIFEST, seeded_bytes, sha256_hex};

/// One blob of the set, as a file.
pub struct Blob {
    pub hex: String,
    pub size: u64,
    pub path: PathBuf,
}

/// One image: its blobs (layers, then the config) and its manifest.
pub struct Image {
    pub repo: String,
    pub tag: String,
    /// Indexes into [`ImageSet::blobs`].
    pub blobs: Vec<usize>,
    pub manifest: Vec<u8>,
}

impl Image {
    /// The manifest's digest (`sha256:…`).
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest))
    }
}

/// Where each image goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// `team/app-NN:v1`: one repository per image (cross-repository mounts).
    ManyRepos,
    /// `team/app:vNN`: one repository, one tag per image.
    OneRepo,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::ManyRepos => "team/app-NN:v1",
            Layout::OneRepo => "team/app:vNN",
        }
    }

    fn place(self, i: usize) -> (String, String) {
        match self {
            Layout::ManyRepos => (format!("team/app-{i:02}"), "v1".into()),
            Layout::OneRepo => ("team/app".into(), format!("v{i:02}")),
        }
    }
}

/// The images and the blob files they name.
pub struct ImageSet {
    pub blobs: Vec<Blob>,
    pub images: Vec<Image>,
}

impl ImageSet {
    /// Distinct blob bytes (what a copier that sends each blob once sends).
    pub fn unique_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// Blob bytes if every image's blobs were sent in full.
    pub fn naive_bytes(&self) -> u64 {
        self.images
            .iter()
            .flat_map(|i| &i.blobs)
            .map(|&b| self.blobs[b].size)
            .sum()
    }

    /// The repositories, each once, in order.
    pub fn repos(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.images
            .iter()
            .filter(|i| seen.insert(i.repo.clone()))
            .map(|i| i.repo.clone())
            .collect()
    }
}

/// CRC-32 (IEEE), as gzip's trailer needs it.
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// `data` as a valid gzip stream of stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    if chunks.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Blob {
    let hex = sha256_hex(bytes);
    let path = dir.join(&hex);
    std::fs::write(&path, bytes).unwrap();
    Blob {
        hex,
        size: bytes.len() as u64,
        path,
    }
}

/// `images` images of `base` shared layers plus one layer of their own and a
/// config of their own, every layer `layer_kib` KiB of content; `seed` makes
/// the bytes of this run (so no cache from an earlier run knows them).
pub fn image_set(
    dir: &Path,
    layout: Layout,
    images: usize,
    base: usize,
    layer_kib: usize,
    seed: u64,
) -> ImageSet {
    let mut blobs = Vec::new();
    let layer = |blobs: &mut Vec<Blob>, s: u64| {
        blobs.push(write_blob(
            dir,
            &gzip_stored(&seeded_bytes(layer_kib << 10, s)),
        ));
        blobs.len() - 1
    };
    let shared: Vec<usize> = (0..base)
        .map(|i| layer(&mut blobs, seed + i as u64))
        .collect();
    let mut out = Vec::new();
    for i in 0..images {
        let own = layer(&mut blobs, seed + 1000 + i as u64);
        let layers: Vec<usize> = shared.iter().copied().chain([own]).collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|&l| format!("sha256:{}", blobs[l].hex))
            .collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"bench.image":"{i}"}}}},"rootfs":{{"type":"layers","diff_ids":{diff_ids:?}}}}}"#
        );
        let cfg = write_blob(dir, config.as_bytes());
        let descs: Vec<String> = layers
            .iter()
            .map(|&l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":{}}}"#,
                    blobs[l].hex, blobs[l].size
                )
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{}]}}"#,
            cfg.hex,
            cfg.size,
            descs.join(",")
        );
        blobs.push(cfg);
        let (repo, tag) = layout.place(i);
        out.push(Image {
            repo,
            tag,
            blobs: layers.into_iter().chain([blobs.len() - 1]).collect(),
            manifest: manifest.into_bytes(),
        });
    }
    ImageSet { blobs, images: out }
}

/// A `Location` header made absolute against `base`.
fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc.to_owned()
    }
}

/// Pushes every image of `set` to `base` (a registry without users, from
/// loopback): each blob is uploaded once and mounted into the other
/// repositories that need it, then the manifest is put by tag.
pub fn push_set(base: &str, set: &ImageSet) {
    let c = reqwest::blocking::Client::new();
    // digest index → a repository holding it.
    let mut held: HashMap<usize, String> = HashMap::new();
    let mut in_repo: HashSet<(String, usize)> = HashSet::new();
    for img in &set.images {
        for &b in &img.blobs {
            if !in_repo.insert((img.repo.clone(), b)) {
                continue;
            }
            let blob = &set.blobs[b];
            let uploads = format!("{base}/v2/{}/blobs/uploads/", img.repo);
            if let Some(from) = held.get(&b) {
                let r = c
                    .post(&uploads)
                    .query(&[
                        ("mount", format!("sha256:{}", blob.hex)),
                        ("from", from.clone()),
                    ])
                    .send()
                    .unwrap();
                if r.status() == 201 {
                    continue;
                }
            }
            let r = c.post(&uploads).send().unwrap();
            assert_eq!(r.status(), 202, "upload start on {}", img.repo);
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            let loc = absolute(base, &loc);
            let sep = if loc.contains('?') { '&' } else { '?' };
            let r = c
                .put(format!("{loc}{sep}digest=sha256:{}", blob.hex))
                .header("content-type", "application/octet-stream")
                .body(std::fs::File::open(&blob.path).unwrap())
                .send()
                .unwrap();
            assert_eq!(r.status(), 201, "blob PUT to {}", img.repo);
            held.insert(b, img.repo.clone());
        }
        let r = c
            .put(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
            .header("content-type", OCI_MANIFEST)
            .body(img.manifest.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "manifest PUT {}:{}", img.repo, img.tag);
    }
}

/// The tags of `set` `base` does not hold with their pushed digest
/// (`creds`: Basic `user:password`).
pub fn missing(base: &str, creds: (&str, &str), set: &ImageSet) -> Vec<String> {
    let c = reqwest::blocking::Client::new();
    set.images
        .iter()
        .filter(|img| {
            let r = c
                .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
                .basic_auth(creds.0, Some(creds.1))
                .header("accept", OCI_MANIFEST)
                .send()
                .unwrap();
            let ok = r.status() == 200;
            !(ok && r.bytes().unwrap().as_ref() == img.manifest.as_slice())
        })
        .map(|img| format!("{}:{}", img.repo, img.tag))
        .collect()
}
