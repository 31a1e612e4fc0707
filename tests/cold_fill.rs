//! A cold fill followed by clients that join while it runs: each joins at a
//! pause of the upstream, when part of the bytes are in the staging file and
//! the newest part only in memory, and reads from the start (file first, then
//! memory). Every client must get the whole blob, byte for byte.
//!
//! The upstream is a raw HTTP/1.1 server that sends the blob up to a limit the
//! test raises step by step, so the pauses land wherever the test says. (A
//! reader that fell behind the window once read past the end of the file
//! while a write was in flight: a race these tests exercise but cannot force;
//! `Window::locate` has the deterministic unit test.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::upstreams::mirror_config;
use common::{Wharf, bytes, digest, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Serves `blob` to every GET (headers for a HEAD), sending no byte at or past
/// the limit `allowed` holds until the test raises it.
async fn paced_upstream(blob: Arc<Vec<u8>>, allowed: watch::Receiver<usize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (blob, mut allowed) = (blob.clone(), allowed.clone());
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nDocker-Content-Digest: {}\r\n\r\n",
                    blob.len(),
                    digest(&blob)
                );
                if stream.write_all(head.as_bytes()).await.is_err() || req.starts_with(b"HEAD") {
                    return;
                }
                let mut sent = 0;
                while sent < blob.len() {
                    let upto = (*allowed.borrow_and_update()).min(blob.len());
                    if upto > sent {
                        if stream.write_all(&blob[sent..upto]).await.is_err() {
                            return;
                        }
                        sent = upto;
                    } else if allowed.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Reads a whole response body, counting the bytes in `got` as they arrive.
async fn read_counting(
    mut resp: reqwest::Response,
    got: Arc<AtomicUsize>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                got.store(body.len(), Ordering::SeqCst);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("cut short at {} bytes: {e}", body.len())),
        }
    }
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client's body, read in the background: the bytes or why it was cut short.
type Reading = tokio::task::JoinHandle<Result<Vec<u8>, String>>;

/// A mirror in front of a paced upstream serving `blob`: the mirror, the
/// upstream's limit, and the blob's path on the mirror.
async fn start(
    dir: &std::path::Path,
    blob: &Arc<Vec<u8>>,
) -> (Wharf, watch::Sender<usize>, String) {
    let (allow, allowed) = watch::channel(0usize);
    let url = paced_upstream(blob.clone(), allowed).await;
    let m = Wharf::start_config(common::config(
        &dir.join("mirror"),
        &mirror_config(&url, "", ""),
    ))
    .await;
    let path = format!("/v2/library/paced/blobs/{}", digest(blob));
    (m, allow, path)
}

/// A client of `path` reading in the background: its progress and its result.
async fn client(m: &Wharf, path: &str) -> (Arc<AtomicUsize>, Reading) {
    let got = Arc::new(AtomicUsize::new(0));
    let resp = http().get(m.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    (got.clone(), tokio::spawn(read_counting(resp, got)))
}

async fn check_all(blob: &[u8], clients: Vec<(usize, Reading)>) {
    for (at, task) in clients {
        let body = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("client joining at {at}: {e}"));
        assert!(body == blob, "client joining at {at} got other bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_joining_a_cold_fill_at_a_pause_get_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let blob = Arc::new(bytes(10 << 20, 77));
    let (m, allow, path) = start(dir.path(), &blob).await;
    // Pauses at uneven offsets, so the part of the bytes not yet in the
    // staging file differs at each.
    let mut clients = Vec::new();
    for i in 1..=12 {
        let at = i * 731 * 1024 + i * 4099;
        allow.send_replace(at);
        let (got, task) = client(&m, &path).await;
        // Everything the upstream sent so far reaches the newcomer (from the
        // file, then from memory) before any more is sent.
        wait_for(
            &format!("the client joining at {at} to read it all"),
            || got.load(Ordering::SeqCst) >= at || task.is_finished(),
        )
        .await;
        clients.push((at, task));
    }
    allow.send_replace(blob.len());
    check_all(&blob, clients).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_joining_a_running_cold_fill_get_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let blob = Arc::new(bytes(12 << 20, 78));
    let (m, allow, path) = start(dir.path(), &blob).await;
    // The upstream sends in small steps, each once the first client has it
    // (so the mirror has received it); newcomers join every few steps and
    // catch up from the staging file while the writes go on behind them.
    allow.send_replace(1);
    let (first, first_task) = client(&m, &path).await;
    let mut clients = Vec::new();
    let mut at = 0;
    let mut step = 0;
    while at < blob.len() {
        at = (at + 97 * 1024 + 7).min(blob.len());
        allow.send_replace(at);
        let want = at.min(blob.len() - 1);
        wait_for(&format!("the first client to read {want}"), || {
            first.load(Ordering::SeqCst) >= want || first_task.is_finished()
        })
        .await;
        step += 1;
        if step % 4 == 0 {
            clients.push((at, client(&m, &path).await.1));
        }
    }
    clients.push((0, first_task));
    check_all(&blob, clients).await;
    m.stop().await;
}
