//! Hostile-client attacks on the zero-copy blob path (`http::zero_copy`):
//! each test drives a raw HTTP/1 connection the way a careless or hostile
//! client might and checks that every response carries exactly its own
//! bytes, or is cut short, and never hangs.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::raw_http::{connect, read_head, read_response};
use common::{Wharf, bytes, push_blob};

/// Far more than loopback socket buffers hold: the server is still sending
/// the blob when the next request is handled.
const HUGE: usize = 32 << 20;

/// Where the first difference is, for a readable failure.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .or((got.len() != want.len()).then(|| got.len().min(want.len())))
}

/// Starts an upload session; returns its Location.
async fn upload_session(w: &Wharf, repo: &str) -> String {
    let r = common::http()
        .post(w.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_upload_expecting_100_continue_does_not_land_inside_a_blob_being_sent() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(HUGE, 21);
    let d = push_blob(&w, "zca/cont", &data).await;
    let loc = upload_session(&w, "zca/cont").await;
    let addr = w.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        // A blob GET, and behind it (pipelined, before any byte of the blob
        // was read) a PATCH that asks for "100 Continue".
        let reqs = format!(
            "GET /v2/zca/cont/blobs/{d} HTTP/1.1\r\nHost: wharf\r\n\r\n\
             PATCH {loc} HTTP/1.1\r\nHost: wharf\r\nExpect: 100-continue\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello"
        );
        s.write_all(reqs.as_bytes()).unwrap();
        let mut rest = Vec::new();
        let r = read_response(&mut s, &mut rest, false);
        assert_eq!(r.status, 200, "{}", r.head);
        assert!(
            r.body == data,
            "the blob's bytes differ from offset {:?}: {:?}",
            first_difference(&r.body, &data),
            String::from_utf8_lossy(&r.body[r.body.len() - 64..]),
        );
        // Then the upload's answers, in order: 100 Continue (or not), 202.
        let mut r = read_response(&mut s, &mut rest, false);
        if r.status == 100 {
            r = read_response(&mut s, &mut rest, false);
        }
        assert_eq!(r.status, 202, "{}", r.head);
    })
    .await
    .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_heads_errors_empty_blobs_and_span_sized_ranges_line_up() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let span = 2usize << 20;
    let big = bytes(2 * span, 23);
    let db = push_blob(&w, "zca/mix", &big).await;
    let de = push_blob(&w, "zca/mix", &[]).await;
    let one = bytes(1, 24);
    let d1 = push_blob(&w, "zca/mix", &one).await;
    let addr = w.addr;
    tokio::task::spawn_blocking(move || {
        let get = |d: &str, extra: &str| {
            format!("GET /v2/zca/mix/blobs/{d} HTTP/1.1\r\nHost: wharf\r\n{extra}\r\n")
        };
        let head = |d: &str| format!("HEAD /v2/zca/mix/blobs/{d} HTTP/1.1\r\nHost: wharf\r\n\r\n");
        let unknown = format!("sha256:{}", "0".repeat(64));
        // (request, is HEAD, status, body)
        let cases: Vec<(String, bool, u16, &[u8])> = vec![
            (
                get(&db, "Range: bytes=0-2097151\r\n"),
                false,
                206,
                &big[..span],
            ),
            (head(&db), false, 200, &[]),
            (
                get(&db, "Range: bytes=2097152-4194303\r\n"),
                false,
                206,
                &big[span..],
            ),
            (get(&de, ""), false, 200, &[]),
            (get(&de, "Range: bytes=0-\r\n"), false, 416, b""),
            (get(&unknown, ""), false, 404, b""),
            (get(&d1, "Range: bytes=0-0\r\n"), false, 206, &one[..]),
            (
                get(&db, "Range: bytes=2097151-2097152\r\n"),
                false,
                206,
                &big[span - 1..span + 1],
            ),
            (head(&de), true, 200, &[]),
            (get(&db, "Range: bytes=0-1,5-9\r\n"), false, 200, &big[..]),
            (get(&db, "Expect: 100-continue\r\n"), false, 200, &big[..]),
            (
                get(&db, "Upgrade: websocket\r\nConnection: Upgrade\r\n"),
                false,
                200,
                &big[..],
            ),
            (get(&d1, "Connection: close\r\n"), false, 200, &one[..]),
        ];
        let mut s = connect(addr);
        let all: String = cases.iter().map(|c| c.0.clone()).collect();
        s.write_all(all.as_bytes()).unwrap();
        let mut rest = Vec::new();
        for (i, (req, is_head, status, want)) in cases.iter().enumerate() {
            let is_head = *is_head || req.starts_with("HEAD");
            let r = read_response(&mut s, &mut rest, is_head);
            assert_eq!(r.status, *status, "case {i}: {req:?} {}", r.head);
            if r.status < 300 {
                assert!(
                    r.body == *want,
                    "case {i}: {req:?}: differs at {:?}",
                    first_difference(&r.body, want)
                );
            }
        }
        // Connection: close ends it after the last answer, nothing stray.
        let mut tail = Vec::new();
        s.read_to_end(&mut tail).unwrap();
        assert!(
            rest.is_empty() && tail.is_empty(),
            "{} stray bytes",
            rest.len() + tail.len()
        );

        // HTTP/1.0, with and without keep-alive.
        let mut s = connect(addr);
        let req = format!(
            "GET /v2/zca/mix/blobs/{db} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
             GET /v2/zca/mix/blobs/{db} HTTP/1.0\r\nRange: bytes=1-2097152\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut rest = Vec::new();
        let r = read_response(&mut s, &mut rest, false);
        assert!(
            r.status == 200 && r.body == big,
            "HTTP/1.0 keep-alive: {}",
            r.head
        );
        let r = read_response(&mut s, &mut rest, false);
        assert!(
            r.status == 206 && r.body == big[1..=span],
            "HTTP/1.0: {}",
            r.head
        );
        let mut tail = Vec::new();
        s.read_to_end(&mut tail).unwrap();
        assert!(rest.is_empty() && tail.is_empty());
    })
    .await
    .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_connections_at_once_each_get_their_own_blob() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let mut blobs = Vec::new();
    for seed in 0..4u64 {
        let data = bytes((3 << 20) + 1000 * seed as usize + 1, 30 + seed);
        let d = push_blob(&w, "zca/many", &data).await;
        blobs.push((d, data));
    }
    let blobs = std::sync::Arc::new(blobs);
    let addr = w.addr;
    let mut tasks = Vec::new();
    for c in 0..24usize {
        let blobs = blobs.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut s = connect(addr);
            let mut rest = Vec::new();
            for round in 0..4usize {
                let (d, data) = &blobs[(c + round) % blobs.len()];
                let (range, want): (String, &[u8]) = match (c + round) % 3 {
                    0 => (String::new(), &data[..]),
                    1 => (format!("Range: bytes={}-\r\n", c * 4099), &data[c * 4099..]),
                    _ => (
                        format!("Range: bytes={}-{}\r\n", (2 << 20) - c, (2 << 20) + c),
                        &data[(2 << 20) - c..=(2 << 20) + c],
                    ),
                };
                let req =
                    format!("GET /v2/zca/many/blobs/{d} HTTP/1.1\r\nHost: wharf\r\n{range}\r\n");
                s.write_all(req.as_bytes()).unwrap();
                // Read slowly on some connections, so sends interleave.
                let r = read_response(&mut s, &mut rest, false);
                assert!(r.status == 200 || r.status == 206, "{}", r.head);
                assert!(
                    r.body == want,
                    "connection {c} round {round}: differs at {:?}",
                    first_difference(&r.body, want)
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_a_blob_being_sent_to_a_slow_reader() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(HUGE, 25);
    let d = push_blob(&w, "zca/drain", &data).await;
    let addr = w.addr;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (stopping_tx, stopping_rx) = std::sync::mpsc::channel::<()>();
    let reader = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        // Close-delimited framing must not be an option: ask for keep-alive.
        s.write_all(
            format!("GET /v2/zca/drain/blobs/{d} HTTP/1.1\r\nHost: wharf\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut rest = Vec::new();
        let (status, head) = read_head(&mut s, &mut rest);
        assert_eq!(status, 200, "{head}");
        started_tx.send(()).unwrap();
        // Shutdown is signalled while most of the blob is unsent.
        stopping_rx.recv().unwrap();
        let mut chunk = vec![0u8; 1 << 16];
        while rest.len() < HUGE {
            let n = s.read(&mut chunk).expect("read body");
            assert!(n > 0, "cut {} bytes into the blob by the drain", rest.len());
            rest.extend_from_slice(&chunk[..n]);
        }
        assert!(
            rest == data,
            "differs at {:?}",
            first_difference(&rest, &data)
        );
        // And the connection closes after it (no keep-alive while draining).
        let mut tail = Vec::new();
        s.read_to_end(&mut tail).unwrap();
        assert!(tail.is_empty());
    });
    started_rx.await.unwrap();
    let stop = tokio::spawn(w.stop());
    // The listener is gone once the server has begun its drain.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept accepting"
        );
        tokio::task::yield_now().await;
    }
    stopping_tx.send(()).unwrap();
    reader.await.unwrap();
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_deleted_collected_and_pushed_again_mid_send_still_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[gc]\ninterval = \"0\"\ngrace = \"0s\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&dir.path().join("data"), extra)).await;
    let data = bytes(HUGE, 26);
    let d = push_blob(&w, "zca/gone", &data).await;
    let addr = w.addr;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let d2 = d.clone();
    let sent = data.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(
            format!("GET /v2/zca/gone/blobs/{d2} HTTP/1.1\r\nHost: wharf\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut rest = Vec::new();
        let (status, head) = read_head(&mut s, &mut rest);
        assert_eq!(status, 200, "{head}");
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let mut chunk = vec![0u8; 1 << 16];
        while rest.len() < HUGE {
            let n = s.read(&mut chunk).expect("read body");
            assert!(n > 0, "cut {} bytes into the blob", rest.len());
            rest.extend_from_slice(&chunk[..n]);
        }
        assert!(
            rest == sent,
            "differs at {:?}",
            first_difference(&rest, &sent)
        );
    });
    started_rx.await.unwrap();
    // While it is being sent: unlinked and collected (gc keeps the file of
    // a blob being read; either way the bytes sent must be the blob's); it
    // can be pushed again afterwards.
    let r = common::http()
        .delete(w.url(&format!("/v2/zca/gone/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    lc.gc.worker.pass(false).await.unwrap();
    eprintln!(
        "file still there: {}",
        common::disk::blob_path(&w.root, &d).exists()
    );
    go_tx.send(()).unwrap();
    reader.await.unwrap();
    assert_eq!(push_blob(&w, "zca/gone", &data).await, d);
    drop(lc);
    w.stop().await;
}
