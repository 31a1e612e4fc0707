//! Clients that stall or hog: slow headers and slow bodies are cut off, and one
//! address cannot stream more than its share of uploads at once.

mod common;

use std::time::Duration;

use common::{Wharf, digest, push_blob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &str =
    "[server]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\nuploads_per_client = 2\n";

/// Reads until the server closes; the guard only catches a server that never does.
async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "server kept a stalled connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `needle` arrives.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), LIMITS).await;
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let resp = read_all(&mut s).await;
    assert!(!resp.contains("200 OK"), "{resp}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_are_cut_off_and_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), LIMITS).await;
    let data = vec![7u8; 100];
    let d = digest(&data);
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    let head = format!(
        "POST /v2/slow/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..10]).await.unwrap();
    let resp = read_until(&mut s, "BLOB_UPLOAD_INVALID").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("no data for 1s"), "{resp}");
    let r = common::http()
        .head(w.url(&format!("/v2/slow/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(std::fs::read_dir(w.root.join("tmp")).unwrap().count(), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_per_client_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    // A long body timeout here: the two held uploads must stay open.
    let w = Wharf::start_with(dir.path(), "[server]\nuploads_per_client = 2\n").await;
    let c = common::http();
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = c
            .post(w.url("/v2/capped/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let mut s = TcpStream::connect(w.addr).await.unwrap();
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // hyper answers 100 Continue once the handler reads the body: the slot is taken.
        read_until(&mut s, "100 Continue").await;
        s.write_all(&[1u8; 10]).await.unwrap();
        held.push(s);
    }
    let r = c
        .post(w.url("/v2/capped/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(w.url(&loc))
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(common::error_code(r).await, "TOOMANYREQUESTS");
    // Pulls are not uploads: still served.
    assert_eq!(c.get(w.url("/v2/")).send().await.unwrap().status(), 200);
    // Once the held uploads end, the slots are back.
    for mut s in held {
        s.write_all(&[1u8; 990]).await.unwrap();
        read_until(&mut s, "202 Accepted").await;
    }
    push_blob(&w, "capped", b"after the others").await;
    w.stop().await;
}
