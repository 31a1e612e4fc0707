//! The wharf binary as users run it: crash safety (kill -9), SIGTERM drain,
//! start-up reconciliation, `check-config`, and the access log.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{WharfProcess, bytes, digest};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

fn push(w: &WharfProcess, repo: &str, data: &[u8]) -> String {
    let c = client();
    let r = c
        .post(w.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let d = digest(data);
    let r = c
        .put(w.url(&format!("{loc}?digest={d}")))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

#[test]
fn kill_9_during_a_large_upload_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut w = WharfProcess::spawn(dir.path(), &root, "");
    let kept = bytes(2 << 20, 11);
    let kept_d = push(&w, "crash/test", &kept);

    let big = bytes(64 << 20, 12);
    let big_d = digest(&big);
    let c = client();
    let r = c
        .post(w.url("/v2/crash/test/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // First chunk fully accepted: bytes are in tmp/.
    let r = c
        .patch(w.url(&loc))
        .body(big[..8 << 20].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // Second chunk in flight when the process dies.
    let mut s = TcpStream::connect(host_port(&w.base)).unwrap();
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        big.len() - (8 << 20)
    )
    .unwrap();
    s.write_all(&big[8 << 20..24 << 20]).unwrap();
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    drop(s);
    assert!(
        std::fs::read_dir(root.join("tmp")).unwrap().count() > 0,
        "the crash left temp data"
    );

    let w = WharfProcess::spawn(dir.path(), &root, "");
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "tmp/ emptied at start"
    );
    let c = client();
    let r = c
        .get(w.url(&format!("/v2/crash/test/blobs/{kept_d}")))
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), kept.as_slice());
    assert_eq!(
        c.head(w.url(&format!("/v2/crash/test/blobs/{big_d}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(w.url(&loc)).send().unwrap().status(),
        404,
        "the dead session is gone"
    );
    // Redo the upload from scratch.
    assert_eq!(push(&w, "crash/test", &big), big_d);
    let r = c
        .get(w.url(&format!("/v2/crash/test/blobs/{big_d}")))
        .send()
        .unwrap();
    assert_eq!(digest(&r.bytes().unwrap()), big_d);
}

#[test]
fn start_up_reconciles_files_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let w = WharfProcess::spawn(dir.path(), &root, "");
    let a = push(&w, "r", b"blob a");
    let b = push(&w, "r", b"blob b");
    drop(w);
    // A lost file, and a file the index never heard of (crash before the index write).
    let path = |d: &str| root.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    std::fs::remove_file(path(&b)).unwrap();
    let orphan = digest(b"orphan");
    std::fs::create_dir_all(path(&orphan).parent().unwrap()).unwrap();
    std::fs::write(path(&orphan), b"orphan").unwrap();

    let w = WharfProcess::spawn(dir.path(), &root, "");
    let c = client();
    assert_eq!(
        c.head(w.url(&format!("/v2/r/blobs/{a}")))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.head(w.url(&format!("/v2/r/blobs/{b}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert!(!path(&orphan).exists(), "orphan file removed");
    // The lost blob can be pushed again.
    assert_eq!(push(&w, "r", b"blob b"), b);
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut w = WharfProcess::spawn(dir.path(), &root, "");
    let c = client();
    let r = c.post(w.url("/v2/drain/blobs/uploads/")).send().unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let body = bytes(4 << 20, 5);
    let mut s = TcpStream::connect(host_port(&w.base)).unwrap();
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..1 << 20]).unwrap();
    // The request must be in flight (its headers parsed, bytes arriving) before
    // the signal: a connection whose request was not read yet is idle, and a
    // drain closes idle connections at once. Under load that takes a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = client()
            .get(w.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let received = m
            .lines()
            .find_map(|l| l.strip_prefix("wharf_upload_bytes_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if received > 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the PATCH never started"
        );
        std::thread::yield_now();
    }

    let pid = w.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    w.wait_log("no longer accepting connections");
    // New connections are refused while the old one finishes.
    assert!(client().get(w.url("/v2/")).send().is_err());
    s.write_all(&body[1 << 20..]).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.contains(&format!("0-{}", body.len() - 1)), "{resp}");
    let status = w.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn access_log_has_one_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let w = WharfProcess::spawn(dir.path(), &dir.path().join("data"), "");
    let r = client()
        .get(w.url("/v2/some/repo/manifests/missing"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let line = w.wait_log("route=\"manifest\"");
    for part in [
        "method=GET",
        "status=404",
        "repo=\"some/repo\"",
        "bytes=",
        "ms=",
        "cache=",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}

fn check_config(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_config_names_the_bad_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"127.0.0.1:5000\"\n\n[storage]\nmax_cache_size = \"12 parsecs\"\n",
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_cache_size") && err.contains("line 5"),
        "{err}"
    );

    std::fs::write(
        &bad,
        "[server]\nlisten = \"127.0.0.1:5000\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let out = check_config(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("colour") && err.contains("line 3"), "{err}");

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wharf.toml");
    let out = check_config(std::path::Path::new(good));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
