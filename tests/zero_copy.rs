//! Warm blobs on plain-TCP HTTP/1 go from the file to the socket with
//! `sendfile` (placeholders in hyper's write queue, see `http::zero_copy`).
//! These tests hold that path to the bytes: whole blobs and ranges (across
//! span boundaries), HEAD, several responses queued on one connection, a
//! client that hangs up, a stored file shorter than its size, and the paths
//! that must not use it (HTTP/2, TLS) still serving the same bytes.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::certs::pki;
use common::raw_http::{connect, get_request, read_response};
use common::{Wharf, bytes, digest, push_blob};

/// Larger than one zero-copy span (2 MiB) twice over, and not a multiple of it.
const BIG: usize = (5 << 20) + 17;

/// `wharf_blob_zero_copy_bytes_total`: blob bytes answered with sendfile.
async fn zero_copy_bytes(w: &Wharf) -> u64 {
    common::metrics_text(w)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("wharf_blob_zero_copy_bytes_total "))
        .expect("the zero-copy counter is exported")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_blobs_and_ranges_come_out_right_on_one_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(BIG, 1);
    let d = push_blob(&w, "zc/big", &data).await;
    let small = bytes(1000, 2);
    let ds = push_blob(&w, "zc/big", &small).await;
    let path = format!("/v2/zc/big/blobs/{d}");
    let addr = w.addr;
    let before = zero_copy_bytes(&w).await;
    let sent = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let mut rest = Vec::new();
        let mut sent = 0u64;
        let span = 2usize << 20;
        // (range, expected bytes) in order, all on one connection.
        let cases: Vec<(Option<String>, &[u8])> = vec![
            (None, &data[..]),
            (Some("0-0".into()), &data[..1]),
            (
                Some(format!("{}-{}", span - 3, span + 2)),
                &data[span - 3..span + 3],
            ),
            (Some(format!("{}-", 2 * span - 1)), &data[2 * span - 1..]),
            (Some("-100".into()), &data[BIG - 100..]),
            (Some(format!("{}-{}", BIG - 1, BIG + 500)), &data[BIG - 1..]),
            (None, &data[..]),
        ];
        for (range, want) in &cases {
            s.write_all(get_request(&path, range.as_deref()).as_bytes())
                .unwrap();
            let r = read_response(&mut s, &mut rest, false);
            let status = if range.is_some() { 206 } else { 200 };
            assert_eq!(r.status, status, "{range:?}");
            assert_eq!(r.body.len(), want.len(), "{range:?}");
            assert!(r.body == *want, "bytes differ for range {range:?}");
            sent += r.body.len() as u64;
            if let Some(range) = range
                && r.status == 206
            {
                let cr = r.header("content-range").unwrap();
                assert!(cr.ends_with(&format!("/{BIG}")), "{range}: {cr}");
            }
        }
        // HEAD: headers only, the exact size, and the next response still
        // lines up (no stray body bytes on the connection).
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: wharf\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, &mut rest, true);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
        s.write_all(get_request(&format!("/v2/zc/big/blobs/{ds}"), None).as_bytes())
            .unwrap();
        let r = read_response(&mut s, &mut rest, false);
        assert_eq!(r.body, small);
        sent += small.len() as u64;
        // An unsatisfiable range is refused, and the connection goes on.
        s.write_all(get_request(&path, Some(&format!("{BIG}-"))).as_bytes())
            .unwrap();
        let r = read_response(&mut s, &mut rest, false);
        assert_eq!(r.status, 416);
        s.write_all(get_request(&path, Some("10-19")).as_bytes())
            .unwrap();
        let r = read_response(&mut s, &mut rest, false);
        assert_eq!(r.body, &data[10..20]);
        assert!(rest.is_empty());
        sent + 10
    })
    .await
    .unwrap();
    // Every byte of those bodies went by sendfile, not through a copy.
    assert_eq!(zero_copy_bytes(&w).await - before, sent);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_each_get_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let a = bytes(BIG, 3);
    let b = bytes((3 << 20) + 5, 4);
    let da = push_blob(&w, "zc/pipe", &a).await;
    let db = push_blob(&w, "zc/pipe", &b).await;
    let addr = w.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        // Five requests in one write, before any response is read: their
        // placeholders queue on one connection.
        let reqs = [
            (format!("/v2/zc/pipe/blobs/{da}"), None, &a[..]),
            (format!("/v2/zc/pipe/blobs/{db}"), None, &b[..]),
            (
                format!("/v2/zc/pipe/blobs/{da}"),
                Some("1048576-4194305"),
                &a[1048576..4194306],
            ),
            (
                format!("/v2/zc/pipe/blobs/{db}"),
                Some("-7"),
                &b[b.len() - 7..],
            ),
            (format!("/v2/zc/pipe/blobs/{da}"), None, &a[..]),
        ];
        let all: String = reqs.iter().map(|(p, r, _)| get_request(p, *r)).collect();
        s.write_all(all.as_bytes()).unwrap();
        let mut rest = Vec::new();
        for (i, (_, range, want)) in reqs.iter().enumerate() {
            let r = read_response(&mut s, &mut rest, false);
            assert!(r.status == 200 || r.status == 206, "response {i}");
            assert!(
                r.body == *want,
                "response {i} ({range:?}): {} bytes, wrong content",
                r.body.len()
            );
        }
    })
    .await
    .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_gets_the_same_bytes_without_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(BIG, 5);
    let d = push_blob(&w, "zc/h2", &data).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = w.url(&format!("/v2/zc/h2/blobs/{d}"));
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == data, "h2 body differs");
    }
    let r = c
        .get(&url)
        .header("range", "bytes=2097150-2097160")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &data[2097150..2097161]);
    assert_eq!(
        zero_copy_bytes(&w).await,
        0,
        "HTTP/2 copies, it has no sendfile path"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_stream_the_same_bytes_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki("wharf zero-copy CA");
    let (cert, key) = p.write(dir.path());
    let extra = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let w = Wharf::launch(common::config(&dir.path().join("data"), &extra)).await;
    let data = bytes(BIG, 6);
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    // Push over TLS (the plain helper cannot reach an HTTPS port).
    let r = h1
        .post(w.url("/v2/zc/tls/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let d = digest(&data);
    let r = h1
        .put(w.url(&format!("{loc}?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = w.url(&format!("/v2/zc/tls/blobs/{d}"));
    for c in [&h1, &p.client()] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == data, "TLS body differs");
        let r = c
            .get(&url)
            .header("range", "bytes=4194300-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), &data[4194300..]);
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_blob_releases_it_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(&dir.path().join("data"), "");
    let (w, lc) = Wharf::start_observed(cfg).await;
    // Far more than loopback socket buffers hold: the server is mid-send
    // when the client goes.
    let data = bytes(48 << 20, 7);
    let d = push_blob(&w, "zc/hangup", &data).await;
    let path = format!("/v2/zc/hangup/blobs/{d}");
    let addr = w.addr;
    let in_use = lc.store().in_use().clone();
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(get_request(&path, None).as_bytes()).unwrap();
        let mut first = vec![0u8; 1 << 16];
        s.read_exact(&mut first).unwrap();
        assert!(in_use.contains(&d2), "the blob is held while it is read");
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(30);
        while in_use.contains(&d2) {
            assert!(
                Instant::now() < deadline,
                "the blob stayed held after its reader hung up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let r = common::http()
        .get(w.url(&format!("/v2/zc/hangup/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == data);
    drop(lc);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_file_shorter_than_its_size_cuts_the_response_short() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    // Damage on disk: one file loses its second half (past the first span,
    // sent with sendfile), another all but 1000 bytes (inside the first
    // span, which is read into the page cache before anything is sent).
    for (seed, keep) in [(8u64, BIG / 2), (10, 1000)] {
        let data = bytes(BIG, seed);
        let d = push_blob(&w, "zc/short", &data).await;
        let file = common::disk::blob_path(&w.root, &d);
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(keep as u64).unwrap();
        drop(f);
        // The response ends early with an error: a client never takes it
        // for whole. Whether the headers went out first is a race (hyper
        // may flush them while the first span is read), so the connection
        // may also close before any response: both are a failed fetch.
        let sent = common::http()
            .get(w.url(&format!("/v2/zc/short/blobs/{d}")))
            .send()
            .await;
        if let Ok(r) = sent {
            assert_eq!(r.status(), 200);
            assert_eq!(r.content_length(), Some(BIG as u64));
            assert!(
                r.bytes().await.is_err(),
                "a file cut to {keep} bytes must not complete a body"
            );
        }
    }
    // The server goes on serving other content.
    let ok = bytes(3000, 9);
    let d2 = push_blob(&w, "zc/short", &ok).await;
    let r = common::http()
        .get(w.url(&format!("/v2/zc/short/blobs/{d2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), ok);
    w.stop().await;
}
