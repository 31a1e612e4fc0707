//! Import (issue 12): `wharf import` of a `registry:2` storage root against
//! `skopeo sync` of the same images from that `registry:2`, running, into a
//! fresh wharf, in one run. Goal: ≥ 3× skopeo's MB/s (no HTTP, no re-upload).
//!
//! Shape: `BENCH_IMAGES` (100) images in as many repositories, each with
//! `BENCH_BASE` (4) shared layers, one layer of its own and a config, every
//! layer `BENCH_LAYER_KIB` (1024) KiB; pushed to Distribution 2.8.2 (Debian's
//! `docker-registry`) over its API. The shape (10 GB in 2,000 blobs) is
//! `BENCH_IMAGES=1000 BENCH_LAYER_KIB=10240`. Data under `BENCH_DIR` (default:
//! the system temporary directory). Measured: the import copying, the import
//! with `--link`, and skopeo; MB/s over the distinct blob bytes. Each
//! destination is deleted as soon as it is measured, and the pushed files
//! once the source registry holds them, so the disk holds at most two copies
//! (about 21 GB at the shape).
//!
//! Run: `cargo bench --bench import`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::image_set::{ImageSet, Layout, image_set, push_set};
use common::{env_or, pair, start_distribution, start_wharf_with, subdir};

const HOSTED: &str = "[hosted]\nonly = true\n";

/// Seconds `wharf import` of `root` into a fresh wharf under `dir` takes.
fn import(dir: &Path, root: &Path, link: bool, set: &ImageSet) -> f64 {
    let w = start_wharf_with(dir, None, HOSTED);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.arg("import").arg(root).args(["--url", &w.base, "--json"]);
    if link {
        c.arg("--link");
    }
    let start = Instant::now();
    let out = c.stderr(Stdio::inherit()).output().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "import{}: {secs:.1} s wall, load {}",
        if link { " --link" } else { "" },
        loadavg()
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(missing(&w.base, set).is_empty(), "import missed tags");
    secs
}

/// Seconds `skopeo sync` of every tag from `src` into a fresh wharf takes;
/// `None` without skopeo.
fn skopeo(dir: &Path, src: &str, set: &ImageSet) -> Option<f64> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return None;
    }
    let w = start_wharf_with(dir, None, HOSTED);
    let home = tempfile::tempdir().unwrap();
    let host = |b: &str| b.trim_start_matches("http://").to_owned();
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for img in &set.images {
        tags.entry(img.repo.clone())
            .or_default()
            .push(img.tag.clone());
    }
    let mut yaml = format!("{}:\n  tls-verify: false\n  images:\n", host(src));
    for (repo, tags) in &tags {
        yaml.push_str(&format!("    {repo}: {tags:?}\n"));
    }
    let yaml_path = home.path().join("sync.yaml");
    std::fs::write(&yaml_path, yaml).unwrap();
    let start = Instant::now();
    let status = Command::new("skopeo")
        .args([
            "sync",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
        ])
        .arg(&yaml_path)
        .arg(format!("{}/team", host(&w.base)))
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!("skopeo sync: {secs:.1} s wall, load {}", loadavg());
    assert!(status.success(), "skopeo sync failed");
    assert!(missing(&w.base, set).is_empty(), "skopeo missed tags");
    Some(secs)
}

/// The 1, 5 and 15 minute load averages (the machine is shared: a figure
/// means little without them).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs `f` on a fresh directory `name` under `root` and deletes it after.
fn measured<T>(root: &Path, name: &str, f: impl FnOnce(&Path) -> T) -> T {
    let dir = subdir(root, name);
    let out = f(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// The tags of `set` that `base` does not serve with their pushed bytes
/// (anonymous pulls: these wharfs have no users).
fn missing(base: &str, set: &ImageSet) -> Vec<String> {
    let c = reqwest::blocking::Client::new();
    set.images
        .iter()
        .filter(|img| {
            let r = c
                .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
                .header("accept", common::OCI_MANIFEST)
                .send()
                .unwrap();
            !(r.status() == 200 && r.bytes().unwrap().as_ref() == img.manifest.as_slice())
        })
        .map(|img| format!("{}:{}", img.repo, img.tag))
        .collect()
}

fn main() {
    let images: usize = env_or("BENCH_IMAGES", 100);
    let base: usize = env_or("BENCH_BASE", 4);
    let layer_kib: usize = env_or("BENCH_LAYER_KIB", 1024);
    let parent: PathBuf = env_or("BENCH_DIR", std::env::temp_dir());
    let dir = tempfile::tempdir_in(parent).unwrap();
    let files = subdir(dir.path(), "files");
    let set = image_set(&files, Layout::ManyRepos, images, base, layer_kib, 0x1207);
    let Some(dist) = start_distribution(&subdir(dir.path(), "dist"), None) else {
        println!("!!! docker-registry is not installed: nothing to import !!!");
        return;
    };
    push_set(&dist.base, &set);
    std::fs::remove_dir_all(&files).unwrap();
    let root = dir.path().join("dist").join("data");
    let mb = set.unique_bytes() as f64 / 1e6;
    println!(
        "{} images, {} blobs, {mb:.0} MB distinct ({})",
        set.images.len(),
        set.blobs.len(),
        Layout::ManyRepos.name()
    );
    println!("load before: {}", loadavg());
    let copy = measured(dir.path(), "copy", |d| import(d, &root, false, &set));
    let link = measured(dir.path(), "link", |d| import(d, &root, true, &set));
    let sk = measured(dir.path(), "skopeo", |d| skopeo(d, &dist.base, &set));
    pair::header(
        "import of a registry:2 root (MB/s)",
        "wharf import",
        "skopeo sync",
    );
    pair::row("copy", mb / copy, sk.map(|s| mb / s));
    pair::row("--link", mb / link, sk.map(|s| mb / s));
    if sk.is_none() {
        println!("!!! skopeo is not installed: wharf's figures only !!!");
    }
}
