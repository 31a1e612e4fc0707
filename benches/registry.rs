//! wharf vs CNCF Distribution 2.8.2 (Debian's `docker-registry`, filesystem
//! storage), same machine, same run, same clients:
//!
//! - push of a 1 GiB blob and a warm GET of it, with curl;
//! - manifest GETs by tag over 64 kept-alive connections (requests/s, p50, p99);
//! - the same with Basic credentials on every request, both servers reading the
//!   same htpasswd file (at `htpasswd -B`'s bcrypt cost);
//! - peak RSS of each server process over the whole run.
//!
//! Run: `cargo bench --bench registry` (set `BENCH_BLOB_MIB` / `BENCH_SECS` to
//! change the size and the load duration). Figures are printed as wharf /
//! Distribution ratios, since absolute numbers on shared machines are noise.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

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

fn push_manifest(s: &Server, repo: &str, tag: &str) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 4096];
    let cd = push_small(s, repo, config);
    let ld = push_small(s, repo, &layer);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    put_bytes(
        s,
        &format!("{}/v2/{repo}/manifests/{tag}", s.base),
        OCI_MANIFEST,
        m.as_bytes(),
    );
}

/// GETs a blob `times` times; the best bytes/s.
fn pull_speed(s: &Server, repo: &str, digest: &str, times: usize) -> f64 {
    (0..times)
        .map(|_| {
            let mut c = s.curl();
            c.args(["-s", "-o", "/dev/null", "-w", "%{speed_download}"])
                .arg(format!("{}/v2/{repo}/blobs/sha256:{digest}", s.base));
            output(c, "blob pull").trim().parse::<f64>().unwrap()
        })
        .fold(0.0, f64::max)
}

struct Results {
    push: f64,
    pull: f64,
    load: Load,
    auth_load: Option<Load>,
    rss_kib: u64,
}

fn run(s: &Server, blob: &Path, digest: &str, secs: u64) -> Results {
    let push = push_file(s, "bench/big", blob, digest);
    let pull = pull_speed(s, "bench/big", digest, 3);
    push_manifest(s, "bench/app", "latest");
    let load = manifest_load(s, "/v2/bench/app/manifests/latest", 64, secs);
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
    manifest_load(&s, "/v2/bench/app/manifests/latest", 64, secs)
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

    let mbps = |b: f64| b / 1e6;
    println!(
        "\n{:<36} {:>14} {:>14} {:>8}",
        "measure", "wharf", "distribution", "ratio"
    );
    let row = |name: &str, w: f64, d: Option<f64>| match d {
        Some(d) => println!("{name:<36} {w:>14.1} {d:>14.1} {:>7.2}x", w / d),
        None => println!("{name:<36} {w:>14.1}"),
    };
    let auth = |r: &Results, f: fn(&Load) -> f64| r.auth_load.as_ref().map(f).unwrap_or(0.0);
    row(
        "blob push (MB/s)",
        mbps(wr.push),
        dr.as_ref().map(|d| mbps(d.push)),
    );
    row(
        "blob GET warm (MB/s)",
        mbps(wr.pull),
        dr.as_ref().map(|d| mbps(d.pull)),
    );
    row(
        "manifest GET by tag (req/s)",
        wr.load.rps,
        dr.as_ref().map(|d| d.load.rps),
    );
    row(
        "manifest GET p50 (ms)",
        wr.load.p50_ms,
        dr.as_ref().map(|d| d.load.p50_ms),
    );
    row(
        "manifest GET p99 (ms)",
        wr.load.p99_ms,
        dr.as_ref().map(|d| d.load.p99_ms),
    );
    row(
        "manifest GET + Basic auth (req/s)",
        auth(&wr, |l| l.rps),
        dr.as_ref().map(|d| auth(d, |l| l.rps)),
    );
    row(
        "manifest GET + Basic auth p99 (ms)",
        auth(&wr, |l| l.p99_ms),
        dr.as_ref().map(|d| auth(d, |l| l.p99_ms)),
    );
    row(
        "peak RSS (MiB)",
        wr.rss_kib as f64 / 1024.0,
        dr.as_ref().map(|d| d.rss_kib as f64 / 1024.0),
    );
    let errs = |r: &Results| r.load.errors + r.auth_load.as_ref().map(|l| l.errors).unwrap_or(0);
    if errs(&wr) > 0 || dr.as_ref().is_some_and(|d| errs(d) > 0) {
        println!(
            "errors: wharf {} distribution {}",
            errs(&wr),
            dr.as_ref().map(errs).unwrap_or(0)
        );
    }
}
