//! wharf vs CNCF Distribution 2.8.2 (Debian's `docker-registry`, filesystem
//! storage), same machine, same run, same clients, with nginx serving the same
//! bytes as static files as the machine's limit:
//!
//! - push of a 1 GiB blob and warm GETs of it with curl (best of 3), with the
//!   server's CPU seconds per GiB served; nginx serves the same file with
//!   `sendfile`;
//! - manifest GETs by tag over 64 kept-alive connections (requests/s, p50, p99),
//!   wharf with its access log on (the lines the load caused are counted beside
//!   the requests); nginx serves the same manifest bytes as a static file;
//! - the same with Basic credentials on every request, both registries reading
//!   the same htpasswd file (at `htpasswd -B`'s bcrypt cost);
//! - peak RSS of each registry process over the whole run;
//! - issue 10's goals as ratios of this run (wharf against the faster of
//!   Distribution and nginx, p99, access lines per request, RSS).
//!
//! Run: `cargo bench --bench registry` (set `BENCH_BLOB_MIB` / `BENCH_SECS` to
//! change the size and the load duration). Figures are printed beside wharf /
//! Distribution ratios, since absolute numbers on shared machines are noise.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::nginx::{Static, start_nginx};
use common::table::{Goal, goal, goals_header, header, row};
use common::warm::{Warm, warm_gets};
use common::*;

/// Starts an upload and returns the absolute URL to PUT to, with `digest` added.
fn upload_url(s: &Server, repo: &str, digest: &str) -> String {
    let mut c = s.curl();
    c.args([
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("{}/v2/{repo}/blobs/uploads/", s.base),
    ]);
    let headers = output(c, "upload start");
    let loc = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or_else(|| panic!("{}: no Location in {headers}", s.name))
        .trim()
        .to_owned();
    let loc = if loc.starts_with('/') {
        format!("{}{loc}", s.base)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest=sha256:{digest}")
}

/// Pushes a file; returns bytes/s as curl measured it.
fn push_file(s: &Server, repo: &str, path: &Path, digest: &str) -> f64 {
    let url = upload_url(s, repo, digest);
    let mut c = s.curl();
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{speed_upload}",
        "-X",
        "PUT",
    ])
    .args([
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
        path.to_str().unwrap(),
        &url,
    ]);
    let out = output(c, "blob push");
    let mut parts = out.split_whitespace();
    assert_eq!(parts.next(), Some("201"), "{} push failed", s.name);
    parts.next().unwrap().parse().unwrap()
}

/// PUTs `data` to `url` with `content_type`.
fn put_bytes(s: &Server, url: &str, content_type: &str, data: &[u8]) {
    let mut c = s.curl();
    c.args(["-sf", "-o", "/dev/null", "-X", "PUT", "--data-binary", "@-"])
        .args(["-H", &format!("Content-Type: {content_type}"), url])
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    assert!(child.wait().unwrap().success(), "{} PUT {url}", s.name);
}

fn push_small(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha256_hex(data);
    put_bytes(
        s,
        &upload_url(s, repo, &d),
        "application/octet-stream",
        data,
    );
    d
}

/// The config, the layer and the manifest every registry gets (and nginx serves).
fn bench_image() -> (&'static [u8], Vec<u8>, String) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 4096];
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#,
        sha256_hex(config),
        config.len(),
        sha256_hex(&layer),
        layer.len()
    );
    (config, layer, m)
}

fn push_manifest(s: &Server, repo: &str, tag: &str) {
    let (config, layer, m) = bench_image();
    push_small(s, repo, config);
    push_small(s, repo, &layer);
    put_bytes(
        s,
        &format!("{}/v2/{repo}/manifests/{tag}", s.base),
        OCI_MANIFEST,
        m.as_bytes(),
    );
}

/// Where the big blob and the manifest are, for the registries and nginx alike.
const MANIFEST_PATH: &str = "/v2/bench/app/manifests/latest";

fn blob_path(digest: &str) -> String {
    format!("/v2/bench/big/blobs/sha256:{digest}")
}

struct Results {
    push: f64,
    pull: Warm,
    load: Load,
    auth_load: Option<Load>,
    rss_kib: u64,
}

fn run(s: &Server, blob: &Path, digest: &str, secs: u64) -> Results {
    let push = push_file(s, "bench/big", blob, digest);
    let pull = warm_gets(&format!("{}{}", s.base, blob_path(digest)), 3, &|| {
        s.cpu_secs()
    });
    push_manifest(s, "bench/app", "latest");
    let load = manifest_load(s, MANIFEST_PATH, 64, secs);
    Results {
        push,
        pull,
        load,
        auth_load: None,
        rss_kib: s.peak_rss_kib(),
    }
}

/// Manifest GETs with Basic credentials on every request.
fn run_auth(mut s: Server, creds: &str, secs: u64) -> Load {
    s.creds = Some(creds.to_owned());
    push_manifest(&s, "bench/app", "latest");
    manifest_load(&s, MANIFEST_PATH, 64, secs)
}

/// nginx's reference figures: the blob file with sendfile, the manifest bytes
/// as a static file.
struct Reference {
    pull: Warm,
    load: Load,
}

fn run_nginx(dir: &Path, blob: &Path, digest: &str, secs: u64) -> Option<Reference> {
    let manifest = dir.join("manifest.json");
    std::fs::write(&manifest, bench_image().2).unwrap();
    let files = [
        Static {
            url_path: MANIFEST_PATH.to_owned(),
            file: manifest,
            content_type: OCI_MANIFEST.to_owned(),
        },
        Static {
            url_path: blob_path(digest),
            file: blob.to_owned(),
            content_type: "application/octet-stream".to_owned(),
        },
    ];
    let n = start_nginx(dir, &files)?;
    let pull = warm_gets(
        &format!("{}{}", n.server.base, blob_path(digest)),
        3,
        &|| n.cpu_secs(),
    );
    let load = manifest_load(&n.server, MANIFEST_PATH, 64, secs);
    Some(Reference { pull, load })
}

fn main() {
    let mib: usize = env_or("BENCH_BLOB_MIB", 1024);
    let secs: u64 = env_or("BENCH_SECS", 8);
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob.bin");
    let digest = make_blob(&blob, mib);
    let htpasswd = dir.path().join("htpasswd");
    let creds = write_htpasswd(&htpasswd);
    println!("blob: {mib} MiB, manifest load: 64 connections for {secs}s each");

    let w = start_wharf(&subdir(dir.path(), "wharf"), None);
    let mut wr = run(&w, &blob, &digest, secs);
    drop(w);
    let w = start_wharf(&subdir(dir.path(), "wharf-auth"), Some(&htpasswd));
    wr.auth_load = Some(run_auth(w, &creds, secs));

    let dr = match start_distribution(&subdir(dir.path(), "distribution"), None) {
        Some(d) => {
            let mut r = run(&d, &blob, &digest, secs);
            drop(d);
            r.auth_load =
                start_distribution(&subdir(dir.path(), "distribution-auth"), Some(&htpasswd))
                    .map(|d| run_auth(d, &creds, secs));
            Some(r)
        }
        None => {
            println!(
                "!!! docker-registry (Distribution) is not installed: printing wharf's figures only !!!"
            );
            None
        }
    };

    let nr = run_nginx(&subdir(dir.path(), "nginx"), &blob, &digest, secs);

    let mbps = |b: f64| b / 1e6;
    let (dr, nr) = (dr.as_ref(), nr.as_ref());
    header(&format!(
        "hosted registry ({mib} MiB blob, manifest GETs at 64 connections for {secs}s)"
    ));
    let auth = |r: &Results, f: fn(&Load) -> f64| r.auth_load.as_ref().map(f).unwrap_or(0.0);
    row(
        "blob push (MB/s)",
        mbps(wr.push),
        dr.map(|d| mbps(d.push)),
        None,
    );
    row(
        "blob GET warm, best of 3 (MB/s; nginx sendfile)",
        mbps(wr.pull.bps),
        dr.map(|d| mbps(d.pull.bps)),
        nr.map(|n| mbps(n.pull.bps)),
    );
    row(
        "  server CPU seconds per GiB served",
        wr.pull.cpu_per_gib,
        dr.map(|d| d.pull.cpu_per_gib),
        nr.map(|n| n.pull.cpu_per_gib),
    );
    row(
        "manifest GET by tag (req/s; nginx static file)",
        wr.load.rps,
        dr.map(|d| d.load.rps),
        nr.map(|n| n.load.rps),
    );
    row(
        "manifest GET p50 (ms)",
        wr.load.p50_ms,
        dr.map(|d| d.load.p50_ms),
        nr.map(|n| n.load.p50_ms),
    );
    row(
        "manifest GET p99 (ms)",
        wr.load.p99_ms,
        dr.map(|d| d.load.p99_ms),
        nr.map(|n| n.load.p99_ms),
    );
    row(
        "manifest GET: requests answered",
        wr.load.responses as f64,
        dr.map(|d| d.load.responses as f64),
        nr.map(|n| n.load.responses as f64),
    );
    row(
        "  wharf access log lines for them",
        wr.load.access_lines.unwrap_or(0) as f64,
        None,
        None,
    );
    row(
        "manifest GET + Basic auth (req/s)",
        auth(&wr, |l| l.rps),
        dr.map(|d| auth(d, |l| l.rps)),
        None,
    );
    row(
        "manifest GET + Basic auth p99 (ms)",
        auth(&wr, |l| l.p99_ms),
        dr.map(|d| auth(d, |l| l.p99_ms)),
        None,
    );
    row(
        "peak RSS (MiB)",
        wr.rss_kib as f64 / 1024.0,
        dr.map(|d| d.rss_kib as f64 / 1024.0),
        None,
    );

    println!();
    goals_header("issue 10");
    let fastest = dr
        .map(|d| d.pull.bps)
        .into_iter()
        .chain(nr.map(|n| n.pull.bps))
        .reduce(f64::max);
    goal(
        "warm blob GET: wharf / max(distribution, nginx)",
        fastest.map(|f| wr.pull.bps / f),
        Goal::AtLeast(1.0),
    );
    goal(
        "warm blob CPU per GiB: wharf / distribution",
        dr.map(|d| wr.pull.cpu_per_gib / d.pull.cpu_per_gib),
        Goal::AtMost(1.0),
    );
    goal(
        "manifest GET req/s: wharf / nginx static",
        nr.map(|n| wr.load.rps / n.load.rps),
        Goal::AtLeast(0.7),
    );
    goal(
        "manifest GET p99, wharf (ms)",
        Some(wr.load.p99_ms),
        Goal::Below(5.0),
    );
    goal(
        "access log lines per manifest GET, wharf",
        wr.load
            .access_lines
            .map(|l| l as f64 / wr.load.responses as f64),
        Goal::Exactly(1.0),
    );
    goal(
        "peak RSS: wharf / distribution",
        dr.map(|d| wr.rss_kib as f64 / d.rss_kib as f64),
        Goal::AtMost(0.5),
    );
    let errs = |r: &Results| r.load.errors + r.auth_load.as_ref().map(|l| l.errors).unwrap_or(0);
    let nginx_errs = nr.map(|n| n.load.errors).unwrap_or(0);
    if errs(&wr) > 0 || dr.is_some_and(|d| errs(d) > 0) || nginx_errs > 0 {
        println!(
            "errors: wharf {} distribution {} nginx {nginx_errs}",
            errs(&wr),
            dr.map(errs).unwrap_or(0)
        );
    }
}
