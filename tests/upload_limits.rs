//! Upload sessions are bounded: a flood of upload starts from one client is
//! capped with 429 + Retry-After, and open sessions hold no file descriptors
//! between requests (the wharf runs inside this process, so its descriptors
//! are this process's `/proc/self/fd`).

mod common;

use common::{Wharf, bytes, digest, error_code, http};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Descriptors the test's own machinery may open or close between two counts
/// (runtime threads, a pooled connection); far below one per session.
const SLACK: usize = 16;

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_upload_starts_is_capped_and_holds_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    let before = open_fds();

    let mut sessions = Vec::new();
    let mut refused = 0;
    for _ in 0..2000 {
        let r = c
            .post(w.url("/v2/team/flood/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => sessions.push(r.headers()["location"].to_str().unwrap().to_owned()),
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        !sessions.is_empty() && sessions.len() <= wharf::store::MAX_UPLOADS_PER_CLIENT,
        "{} sessions opened",
        sessions.len()
    );
    assert_eq!(sessions.len() + refused, 2000);
    let idle = open_fds();
    assert!(
        idle < before + SLACK,
        "{} open sessions hold descriptors: {before} before, {idle} after",
        sessions.len()
    );

    // Every session receives a chunk and then sits idle: still no descriptors.
    for loc in &sessions {
        let r = c
            .patch(w.url(loc))
            .body(bytes(10_000, 7))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let written = open_fds();
    assert!(
        written < before + SLACK,
        "{} idle written sessions hold descriptors: {before} before, {written} after",
        sessions.len()
    );

    // A finished session frees its slot for the next upload start.
    let mut blob = bytes(10_000, 7);
    blob.extend_from_slice(b"tail");
    let r = c
        .put(w.url(&format!("{}?digest={}", sessions[0], digest(&blob))))
        .body(&b"tail"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(w.url("/v2/team/flood/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .get(w.url(&format!("/v2/team/flood/blobs/{}", digest(&blob))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), blob.as_slice());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interleaved_chunked_uploads_close_their_files_between_patches() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    const SESSIONS: usize = 40;
    const CHUNKS: usize = 10;
    const CHUNK: usize = 70_000;
    let before = open_fds();
    let blobs: Vec<Vec<u8>> = (0..SESSIONS)
        .map(|i| bytes(CHUNKS * CHUNK, 100 + i as u64))
        .collect();
    let mut locs = Vec::new();
    for _ in 0..SESSIONS {
        let r = c
            .post(w.url("/v2/team/chunks/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        locs.push(r.headers()["location"].to_str().unwrap().to_owned());
    }
    // Round by round, every session gets its next chunk (oras-style ranges).
    for round in 0..CHUNKS {
        let start = round * CHUNK;
        for (loc, blob) in locs.iter_mut().zip(&blobs) {
            let r = c
                .patch(w.url(loc))
                .header("content-range", format!("{start}-{}", start + CHUNK - 1))
                .body(blob[start..start + CHUNK].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "round {round}");
            assert_eq!(
                r.headers()["range"].to_str().unwrap(),
                format!("0-{}", start + CHUNK - 1)
            );
            *loc = r.headers()["location"].to_str().unwrap().to_owned();
        }
        let now = open_fds();
        assert!(
            now < before + SLACK,
            "{SESSIONS} sessions between requests hold descriptors: {before} before, {now} after round {round}"
        );
    }
    for (loc, blob) in locs.iter().zip(&blobs) {
        let r = c
            .put(w.url(&format!("{loc}?digest={}", digest(blob))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = c
            .get(w.url(&format!("/v2/team/chunks/blobs/{}", digest(blob))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), blob.as_slice());
    }
    w.stop().await;
}
