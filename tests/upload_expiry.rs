//! Abandoned uploads expire and take their temp files with them; sessions that
//! never received a byte go first.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wharf::metrics::Metrics;
use wharf::store::Store;
use wharf::workers::Worker;
use wharf::workers::uploads::UploadExpiry;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn tmp_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("tmp")).unwrap().count()
}

/// Sends `data` into session `id` the way a PATCH does, and parks it.
async fn write(store: &Store, repo: &wharf::oci::RepoName, id: &str, data: &'static [u8]) {
    let handle = store.upload(repo, id).unwrap();
    let mut session = handle.lock().await;
    let writer = session.writer.as_mut().unwrap();
    writer.write(Bytes::from_static(data)).await.unwrap();
    session.touched = std::time::Instant::now();
    session.park().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_expire_and_busy_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo = "a/b".parse().unwrap();
    let idle = store.begin_upload(&repo, CLIENT).await.unwrap();
    let busy = store.begin_upload(&repo, CLIENT).await.unwrap();
    write(&store, &repo, &idle, b"some bytes").await;
    write(&store, &repo, &busy, b"more bytes").await;
    assert_eq!(tmp_files(dir.path()), 2);

    // A session in the middle of a request is never expired.
    let handle = store.upload(&repo, &busy).unwrap();
    let guard = handle.lock().await;
    let metrics = Arc::new(Metrics::new());
    let worker = UploadExpiry::new(store.clone(), metrics.clone(), Duration::ZERO);
    assert_eq!(worker.run_once().await.unwrap().expired, 1);
    drop(guard);
    assert!(store.upload(&repo, &idle).is_err());
    assert!(store.upload(&repo, &busy).is_ok());
    assert_eq!(tmp_files(dir.path()), 1);

    // With a long expiry nothing goes.
    let patient = UploadExpiry::new(store.clone(), metrics.clone(), Duration::from_secs(3600));
    assert_eq!(patient.run_once().await.unwrap().expired, 0);
    assert!(metrics.render().contains("wharf_uploads_expired_total 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_that_never_received_a_byte_expire_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo = "a/b".parse().unwrap();
    let empty = store.begin_upload(&repo, CLIENT).await.unwrap();
    let started = store.begin_upload(&repo, CLIENT).await.unwrap();
    // An upload start costs no file until its first byte.
    assert_eq!(tmp_files(dir.path()), 0);
    write(&store, &repo, &started, b"first chunk").await;
    assert_eq!(tmp_files(dir.path()), 1);

    let worker = UploadExpiry::new(
        store.clone(),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
    )
    .with_unwritten_expiry(Duration::ZERO);
    assert_eq!(worker.run_once().await.unwrap().expired, 1);
    assert!(
        store.upload(&repo, &empty).is_err(),
        "the empty session went"
    );
    assert!(
        store.upload(&repo, &started).is_ok(),
        "the written one stays"
    );
    assert_eq!(tmp_files(dir.path()), 1);

    // The survivor goes on where it was and completes with the right digest.
    write(&store, &repo, &started, b", second chunk").await;
    let handle = store.upload(&repo, &started).unwrap();
    let mut session = handle.lock().await;
    let expected = wharf::oci::Digest::of_bytes(b"first chunk, second chunk");
    let size = store
        .finish_upload(&started, &mut session, &expected)
        .await
        .unwrap();
    assert_eq!(size, 25);
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_worker_expires_empty_sessions_within_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo = "a/b".parse().unwrap();
    store.begin_upload(&repo, CLIENT).await.unwrap();
    // Never longer than the configured expiry: with a zero expiry even the
    // default worker takes the empty session at once.
    let worker = UploadExpiry::new(store.clone(), Arc::new(Metrics::new()), Duration::ZERO);
    assert_eq!(worker.run_once().await.unwrap().expired, 1);
    assert!(wharf::store::UNWRITTEN_UPLOAD_EXPIRY <= Duration::from_secs(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_capped_per_client_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo: wharf::oci::RepoName = "a/b".parse().unwrap();
    // MAX_UPLOADS sessions from MAX_UPLOADS / MAX_UPLOADS_PER_CLIENT addresses,
    // opened concurrently (the index batches their rows).
    let clients = wharf::store::MAX_UPLOADS / wharf::store::MAX_UPLOADS_PER_CLIENT;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        for _ in 0..wharf::store::MAX_UPLOADS_PER_CLIENT {
            let (store, repo) = (store.clone(), repo.clone());
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, (c / 256) as u8, (c % 256) as u8));
            tasks.spawn(async move { store.begin_upload(&repo, ip).await });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(store.open_uploads(), wharf::store::MAX_UPLOADS);
    let full_client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
    let new_client = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
    for ip in [full_client, new_client] {
        let e = store.begin_upload(&repo, ip).await.unwrap_err();
        assert!(
            matches!(e, wharf::store::StoreError::TooManyUploads { .. }),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_closes_the_file_of_a_request_that_was_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo = "a/b".parse().unwrap();
    let id = store.begin_upload(&repo, CLIENT).await.unwrap();
    let handle = store.upload(&repo, &id).unwrap();
    {
        // A PATCH whose request ended before it could park its session.
        let mut session = handle.lock().await;
        let writer = session.writer.as_mut().unwrap();
        writer.write(Bytes::from(vec![7u8; 2 << 20])).await.unwrap();
        assert!(!writer.is_parked());
    }
    let worker = UploadExpiry::new(
        store.clone(),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
    );
    assert_eq!(worker.run_once().await.unwrap().expired, 0);
    let session = handle.lock().await;
    let writer = session.writer.as_ref().unwrap();
    assert!(writer.is_parked());
    assert_eq!(writer.len(), 2 << 20);
}
