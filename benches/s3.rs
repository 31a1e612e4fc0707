//! The S3 backend through one node (issue 15's benchmark, single-node part):
//! wharf on the filesystem (the reference), wharf on S3, and CNCF Distribution
//! 2.8.2 with its `s3` storage driver, both on the same S3 server (moto, on this
//! machine: `tests/common/s3.rs`), each in its own bucket, in the same run with
//! the same client. Pulls go through each node as a pull-through mirror of the
//! same upstream (a wharf in token mode with anonymous pulls, like Docker Hub):
//! one cold pull (every blob fetched, stored and streamed), then warm pulls (the
//! best of `BENCH_WARM`); wharf on S3 is then restarted with `redirect = true`
//! and pulled warm again, the client following each 307 to a presigned URL.
//! Pushes (monolithic: one POST and one PUT per blob, then the manifest) go to
//! hosted nodes: wharf on fs, wharf on S3, Distribution on S3 (no proxy). Each
//! case gives wall time, MB/s, the server's peak RSS and the requests its
//! bucket received (counted in moto's request log), and its time as ratios
//! against wharf on fs and against Distribution on S3. Before the figures, the
//! run checks that the S3 cases did store the image in their buckets (and not
//! under their data directories).
//!
//! moto is a Python server that keeps every object in its memory: it is the
//! bottleneck of every S3 case, so the ratios say what a registry adds on top
//! of its bucket server here, not what it would do against MinIO or AWS.
//!
//! Run: `cargo bench --bench s3` (`BENCH_BLOB_MIB` the big layer, 64;
//! `BENCH_SMALL` small layers, 3, of `BENCH_SMALL_KIB`, 512; `BENCH_WARM`
//! warm pulls per case, 3). Needs `python3 -m moto.server` (moto[server]
//! 5.2.1) and Debian's `docker-registry`; without moto it says so and stops.
//!
//! First figures (release build, defaults; the machine is shared with CI and
//! other builds, 2 cores, so absolute times are noisy and only the ratios
//! within one run count):
//!
//! ```text
//! image: 65.5 MiB in 5 blobs (64 MiB layer, 3 x 512 KiB, config); S3 server: moto 5.2.1 on 127.0.0.1
//! bucket wharf-pull: 6 objects, 65.5 MiB under blobs/; local files of the big layer's size: []
//! bucket wharf-push: 6 objects, 65.5 MiB under blobs/; local files of the big layer's size: []
//! bucket dist-pull: 6 objects, 65.5 MiB under docker/registry/v2/blobs/; local files of the big layer's size: []
//! bucket dist-push: 6 objects, 65.5 MiB under docker/registry/v2/blobs/; local files of the big layer's size: []
//!
//! cold pull (one node, mirror)
//! case                             wall s     MB/s   RSS MiB  S3 reqs      t/fs  t/dist-s3
//! wharf, fs                          0.18    386.0      23.2        -      1.00       0.49
//! wharf, s3                          0.23    304.1      65.1        -      1.27       0.62
//! distribution 2.8.2, s3             0.36    189.3     108.3        -      2.04       1.00
//!
//! cold pull until every blob is in storage (S3 requests of the fill)
//! case                             wall s     MB/s   RSS MiB  S3 reqs      t/fs  t/dist-s3
//! wharf, fs                          0.24    288.0      23.2        -      1.00       0.07
//! wharf, s3                          1.38     49.9      65.1       45      5.77       0.40
//! distribution 2.8.2, s3             3.43     20.0     108.3      162     14.40       1.00
//!
//! warm pull (best of 3; S3 requests over all 3)
//! case                             wall s     MB/s   RSS MiB  S3 reqs      t/fs  t/dist-s3
//! wharf, fs                          0.03   2592.2      23.2        -      1.00       0.19
//! wharf, s3                          0.14    493.6      65.1       30      5.25       0.99
//! wharf, s3, redirect = true         0.12    572.9      17.8       32      4.52       0.85
//! distribution 2.8.2, s3             0.14    487.4     108.3       28      5.32       1.00
//!
//! push (one node, hosted; monolithic PUTs)
//! case                             wall s     MB/s   RSS MiB  S3 reqs      t/fs  t/dist-s3
//! wharf, fs                          0.43    159.2      19.4        -      1.00       0.13
//! wharf, s3                          1.49     46.1      43.8       21      3.46       0.43
//! distribution 2.8.2, s3             3.43     20.0      95.0      113      7.95       1.00
//! ```
//!
//! Read: wharf streams a cold blob to its client before the blob is in the
//! bucket (verified bytes are released at once; staging, fsync and the
//! multipart upload follow), so "until in storage" is where S3 costs show;
//! Distribution writes to `_uploads/` and then copies in the bucket. RSS is
//! each server's peak over its case; redirect = true serves the bytes from
//! the bucket server, so its RSS is the index's and the HTTP layer's alone.

mod common;
#[allow(dead_code)]
#[path = "../tests/common/s3.rs"]
mod moto;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::file_image::{Blob, Image, push_image};
use common::table::{case_header, case_row};
use common::*;
use futures_util::StreamExt as _;
use moto::{S3Server, have_s3_server};
use object_store::{ObjectStore as _, ObjectStoreExt as _};

/// Writes the image's files under `dir`: a big layer of `big_mib` MiB and
/// `small` layers of `small_kib` KiB, and a config naming them.
fn make_image(dir: &Path, big_mib: usize, small: usize, small_kib: usize) -> Image {
    let mut blobs = Vec::new();
    let big = dir.join("layer-big");
    let hex = make_blob_seeded(&big, big_mib, 100);
    blobs.push(Blob {
        path: big,
        hex,
        size: (big_mib as u64) << 20,
    });
    for i in 0..small {
        let bytes = seeded_bytes(small_kib << 10, 200 + i as u64);
        let path = dir.join(format!("layer-small{i}"));
        std::fs::write(&path, &bytes).unwrap();
        blobs.push(Blob {
            path,
            hex: sha256_hex(&bytes),
            size: bytes.len() as u64,
        });
    }
    Image::with_layers(dir, blobs)
}

/// Pulls the manifest, then every blob (3 at a time, like dockerd), following
/// redirects; checks each blob's size and returns the wall time.
async fn pull(base: &str, repo: &str, img: &Image) -> Duration {
    let c = reqwest::Client::new();
    let t = Instant::now();
    let m = c
        .get(format!("{base}/v2/{repo}/manifests/latest"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200, "manifest from {base}");
    let _ = m.bytes().await.unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = Vec::new();
    for b in &img.blobs {
        let (c, sem, size) = (c.clone(), sem.clone(), b.size);
        let url = format!("{base}/v2/{repo}/blobs/sha256:{}", b.hex);
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let mut r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let mut n = 0u64;
            while let Some(chunk) = r.chunk().await.unwrap() {
                n += chunk.len() as u64;
            }
            assert_eq!(n, size, "{url}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t.elapsed()
}

/// Objects and bytes in `bucket` under `prefix`.
fn bucket_contents(
    rt: &tokio::runtime::Runtime,
    s3: &S3Server,
    bucket: &str,
    prefix: &str,
) -> (usize, u64) {
    let store = s3.store(bucket);
    rt.block_on(async {
        let prefix = object_store::path::Path::from(prefix);
        let mut list = store.list(Some(&prefix));
        let (mut n, mut bytes) = (0, 0);
        while let Some(m) = list.next().await {
            let m = m.unwrap();
            n += 1;
            bytes += m.size;
        }
        (n, bytes)
    })
}

/// Regular files under `dir` whose size is at least `min` bytes.
fn big_files(dir: &Path, min: u64) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .flat_map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => big_files(&e.path(), min),
            Ok(_) if e.metadata().is_ok_and(|m| m.len() >= min) => vec![e.path()],
            _ => Vec::new(),
        })
        .collect()
}

/// Where a case's registry keeps blobs, to see when a blob has landed.
enum Store<'a> {
    /// wharf's data root on the filesystem (`blobs/sha256/ab/abcd…`).
    Fs(PathBuf),
    /// wharf's bucket (`blobs/sha256/<hex>`).
    Wharf(&'a str),
    /// Distribution's bucket (`docker/registry/v2/blobs/sha256/ab/<hex>/data`).
    Dist(&'a str),
}

impl Store<'_> {
    fn bucket(&self) -> Option<&str> {
        match self {
            Store::Fs(_) => None,
            Store::Wharf(b) | Store::Dist(b) => Some(b),
        }
    }

    /// Whether `b` is stored whole.
    fn holds(&self, rt: &tokio::runtime::Runtime, s3: &S3Server, b: &Blob) -> bool {
        let key = match self {
            Store::Fs(root) => {
                let p = root.join(format!("blobs/sha256/{}/{}", &b.hex[..2], b.hex));
                return std::fs::metadata(p).is_ok_and(|m| m.len() == b.size);
            }
            Store::Wharf(_) => format!("blobs/sha256/{}", b.hex),
            Store::Dist(_) => format!(
                "docker/registry/v2/blobs/sha256/{}/{}/data",
                &b.hex[..2],
                b.hex
            ),
        };
        let store = s3.store(self.bucket().unwrap_or_default());
        rt.block_on(store.head(&object_store::path::Path::from(key)))
            .is_ok_and(|m| m.size == b.size)
    }

    /// Waits (polling, up to `STORED_DEADLINE`) until every blob of `img` is
    /// stored; false when the deadline passed first.
    fn wait_all(&self, rt: &tokio::runtime::Runtime, s3: &S3Server, img: &Image) -> bool {
        let deadline = Instant::now() + STORED_DEADLINE;
        loop {
            if img.blobs.iter().all(|b| self.holds(rt, s3, b)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How long a cold pull's blobs may take to land in storage after the pull.
const STORED_DEADLINE: Duration = Duration::from_secs(120);

/// What one case measured.
#[derive(Default, Clone)]
struct Case {
    name: &'static str,
    cold: Option<Duration>,
    /// From the cold pull's start until every blob was in storage (`None`:
    /// not within [`STORED_DEADLINE`]).
    stored: Option<Duration>,
    warm: Option<Duration>,
    push: Option<Duration>,
    rss_mib: f64,
    /// Requests its bucket received during the cold pull, the warm pulls
    /// (all of them), the push.
    cold_reqs: Option<usize>,
    warm_reqs: Option<usize>,
    push_reqs: Option<usize>,
}

/// The best of `n` warm pulls.
fn warm_pulls(rt: &tokio::runtime::Runtime, base: &str, img: &Image, n: usize) -> Duration {
    (0..n.max(1))
        .map(|_| rt.block_on(pull(base, "library/bench", img)))
        .min()
        .unwrap_or_default()
}

/// The same pull's requests to `bucket`, when it is a bucket case.
fn reqs(s3: &S3Server, bucket: Option<&str>) -> Option<usize> {
    bucket.map(|b| s3.requests(b))
}

/// Cold then warm pulls through a fresh node; `bucket` is where it stores.
fn mirror_case(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    s: &Server,
    s3: &S3Server,
    store: &Store<'_>,
    img: &Image,
    warm: usize,
) -> Case {
    let bucket = store.bucket();
    let r0 = reqs(s3, bucket);
    let t = Instant::now();
    let cold = rt.block_on(pull(&s.base, "library/bench", img));
    let stored = store.wait_all(rt, s3, img).then(|| t.elapsed());
    if stored.is_none() {
        println!("{name}: the cold pull's blobs were not all stored within {STORED_DEADLINE:?}");
    }
    let r1 = reqs(s3, bucket);
    let warm = warm_pulls(rt, &s.base, img, warm);
    let r2 = reqs(s3, bucket);
    let diff = |a: Option<usize>, b: Option<usize>| a.zip(b).map(|(a, b)| b - a);
    Case {
        name,
        cold: Some(cold),
        stored,
        warm: Some(warm),
        rss_mib: s.peak_rss_kib() as f64 / 1024.0,
        cold_reqs: diff(r0, r1),
        warm_reqs: diff(r1, r2),
        ..Case::default()
    }
}

/// Pushes the image into a fresh hosted node.
fn push_case(
    name: &'static str,
    s: &Server,
    s3: &S3Server,
    store: &Store<'_>,
    img: &Image,
) -> Case {
    let bucket = store.bucket();
    let r0 = reqs(s3, bucket);
    let push = push_image(s, "bench/app", "latest", img);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(
        img.blobs.iter().all(|b| store.holds(&rt, s3, b)),
        "{name}: a push answered 201 for a blob it has not stored"
    );
    Case {
        name,
        push: Some(push),
        rss_mib: s.peak_rss_kib() as f64 / 1024.0,
        push_reqs: reqs(s3, bucket).zip(r0).map(|(b, a)| b - a),
        ..Case::default()
    }
}

/// `[storage]` lines for a wharf on `bucket`.
fn wharf_s3(s3: &S3Server, bucket: &str, redirect: bool) -> String {
    format!("{}redirect = {redirect}\n", s3.storage_lines(bucket))
}

/// Distribution's `s3` driver on `bucket` of the same server.
fn dist_s3(s3: &S3Server, bucket: &str) -> String {
    format!(
        "  s3:\n    region: {}\n    regionendpoint: {}\n    bucket: {bucket}\n    accesskey: {}\n    secretkey: {}\n    secure: false\n    v4auth: true\n",
        s3.region, s3.endpoint, s3.access_key, s3.secret_key
    )
}

/// Prints one table: each case's time for `f`, MB/s, peak RSS, bucket
/// requests, and its time against wharf on fs and Distribution on S3.
fn table(
    title: &str,
    cases: &[&Case],
    bytes: u64,
    time: impl Fn(&Case) -> Option<Duration>,
    reqs: impl Fn(&Case) -> Option<usize>,
) {
    let secs = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| time(c))
            .map(|d| d.as_secs_f64())
    };
    let (fs, dist) = (secs(WHARF_FS), secs(DIST_S3));
    case_header(title);
    for c in cases {
        let Some(t) = time(c).map(|d| d.as_secs_f64()) else {
            continue;
        };
        case_row(
            c.name,
            t,
            bytes as f64 / t / 1e6,
            c.rss_mib,
            reqs(c),
            fs.map(|f| t / f),
            dist.map(|d| t / d),
        );
    }
}

const WHARF_FS: &str = "wharf, fs";
const WHARF_S3: &str = "wharf, s3";
const WHARF_S3_REDIRECT: &str = "wharf, s3, redirect = true";
const DIST_S3: &str = "distribution 2.8.2, s3";

fn main() {
    let big_mib: usize = env_or("BENCH_BLOB_MIB", 64);
    let small: usize = env_or("BENCH_SMALL", 3);
    let small_kib: usize = env_or("BENCH_SMALL_KIB", 512);
    let warm: usize = env_or("BENCH_WARM", 3);
    if !have_s3_server() {
        eprintln!("no S3 server (pip install 'moto[server]'): nothing measured");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&subdir(dir.path(), "s3"));
    let buckets = ["wharf-pull", "dist-pull", "wharf-push", "dist-push"];
    for b in buckets {
        s3.bucket(b);
    }
    let img = make_image(&subdir(dir.path(), "image"), big_mib, small, small_kib);
    let bytes = img.bytes();

    // The upstream: a Docker-Hub-like wharf holding the image.
    let htpasswd = dir.path().join("htpasswd");
    let creds = write_htpasswd(&htpasswd);
    let hub_extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = true\n",
        htpasswd.display().to_string()
    );
    let mut hub = start_wharf_with(&subdir(dir.path(), "hub"), None, &hub_extra);
    hub.creds = Some(creds);
    push_image(&hub, "library/bench", "latest", &img);
    hub.creds = None;
    println!(
        "image: {:.1} MiB in {} blobs ({big_mib} MiB layer, {small} x {small_kib} KiB, config); S3 server: moto {} on 127.0.0.1",
        bytes as f64 / (1 << 20) as f64,
        img.blobs.len(),
        moto::MOTO_VERSION
    );
    let have_dist = start_distribution(&subdir(dir.path(), "probe"), None).is_some();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mirror = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"{}\"\ndefault = true\nmanifest_ttl = \"1h\"\n",
        hub.base
    );

    // Pulls through one mirror node each.
    let wfs = start_wharf_with(&subdir(dir.path(), "wharf-fs"), None, &mirror);
    let pull_fs = mirror_case(
        &rt,
        WHARF_FS,
        &wfs,
        &s3,
        &Store::Fs(dir.path().join("wharf-fs/data")),
        &img,
        warm,
    );
    drop(wfs);
    let ws3_dir = subdir(dir.path(), "wharf-s3");
    let ws3 = start_wharf_storage(&ws3_dir, None, &mirror, &wharf_s3(&s3, "wharf-pull", false));
    let pull_s3 = mirror_case(
        &rt,
        WHARF_S3,
        &ws3,
        &s3,
        &Store::Wharf("wharf-pull"),
        &img,
        warm,
    );
    drop(ws3);
    // The same node (data directory, index, bucket) again with redirects on.
    let wred = start_wharf_storage(&ws3_dir, None, &mirror, &wharf_s3(&s3, "wharf-pull", true));
    let r0 = s3.requests("wharf-pull");
    let red_warm = warm_pulls(&rt, &wred.base, &img, warm);
    let pull_red = Case {
        name: WHARF_S3_REDIRECT,
        warm: Some(red_warm),
        rss_mib: wred.peak_rss_kib() as f64 / 1024.0,
        warm_reqs: Some(s3.requests("wharf-pull") - r0),
        ..Case::default()
    };
    drop(wred);
    let pull_dist = have_dist.then(|| {
        let proxy = format!("proxy:\n  remoteurl: {}\n", hub.base);
        let d = start_distribution_storage(
            &subdir(dir.path(), "dist-s3"),
            None,
            &dist_s3(&s3, "dist-pull"),
            &proxy,
        )
        .unwrap();
        mirror_case(&rt, DIST_S3, &d, &s3, &Store::Dist("dist-pull"), &img, warm)
    });

    // Pushes into one hosted node each.
    let hosted = "[hosted]\nonly = true\n";
    let s = start_wharf_with(&subdir(dir.path(), "push-fs"), None, hosted);
    let push_fs = push_case(
        WHARF_FS,
        &s,
        &s3,
        &Store::Fs(dir.path().join("push-fs/data")),
        &img,
    );
    drop(s);
    let push_s3_dir = subdir(dir.path(), "push-s3");
    let s = start_wharf_storage(
        &push_s3_dir,
        None,
        hosted,
        &wharf_s3(&s3, "wharf-push", false),
    );
    let push_s3 = push_case(WHARF_S3, &s, &s3, &Store::Wharf("wharf-push"), &img);
    drop(s);
    let push_dist = have_dist.then(|| {
        let d = start_distribution_storage(
            &subdir(dir.path(), "dist-push"),
            None,
            &dist_s3(&s3, "dist-push"),
            "",
        )
        .unwrap();
        push_case(DIST_S3, &d, &s3, &Store::Dist("dist-push"), &img)
    });

    // The S3 cases stored the image in their buckets, not on local disk.
    let big = &img.blobs[0];
    for (bucket, prefix, local) in [
        ("wharf-pull", "blobs", ws3_dir),
        ("wharf-push", "blobs", push_s3_dir),
        (
            "dist-pull",
            "docker/registry/v2/blobs",
            dir.path().join("dist-s3"),
        ),
        (
            "dist-push",
            "docker/registry/v2/blobs",
            dir.path().join("dist-push"),
        ),
    ] {
        if bucket.starts_with("dist") && !have_dist {
            continue;
        }
        let (n, b) = bucket_contents(&rt, &s3, bucket, prefix);
        let local = big_files(&local, big.size);
        println!(
            "bucket {bucket}: {n} objects, {:.1} MiB under {prefix}/; local files of the big layer's size: {local:?}",
            b as f64 / (1 << 20) as f64
        );
        assert!(b >= bytes, "{bucket} holds the image");
        assert!(
            local.is_empty(),
            "{bucket}'s node kept no blob on local disk"
        );
    }

    let pulls: Vec<&Case> = [Some(&pull_fs), Some(&pull_s3), pull_dist.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    table(
        "cold pull (one node, mirror)",
        &pulls,
        bytes,
        |c| c.cold,
        |_| None,
    );
    table(
        "cold pull until every blob is in storage (S3 requests of the fill)",
        &pulls,
        bytes,
        |c| c.stored,
        |c| c.cold_reqs,
    );
    let mut warm_cases = pulls.clone();
    warm_cases.insert(2, &pull_red);
    table(
        &format!("warm pull (best of {warm}; S3 requests over all {warm})"),
        &warm_cases,
        bytes,
        |c| c.warm,
        |c| c.warm_reqs,
    );
    let pushes: Vec<&Case> = [Some(&push_fs), Some(&push_s3), push_dist.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    table(
        "push (one node, hosted; monolithic PUTs)",
        &pushes,
        bytes,
        |c| c.push,
        |c| c.push_reqs,
    );
}
