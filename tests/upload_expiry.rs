//! Abandoned uploads expire and take their temp files with them.

use std::sync::Arc;
use std::time::Duration;

use wharf::metrics::Metrics;
use wharf::store::Store;
use wharf::workers::uploads::UploadExpiry;

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_expire_and_busy_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo = "a/b".parse().unwrap();
    let idle = store.begin_upload(&repo).await.unwrap();
    let busy = store.begin_upload(&repo).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        2
    );

    // A session in the middle of a request is never expired.
    let handle = store.upload(&repo, &busy).unwrap();
    let guard = handle.lock().await;
    let metrics = Arc::new(Metrics::new());
    let worker = UploadExpiry::new(store.clone(), metrics.clone(), Duration::ZERO);
    assert_eq!(worker.run_once().await.unwrap(), 1);
    drop(guard);
    assert!(store.upload(&repo, &idle).is_err());
    assert!(store.upload(&repo, &busy).is_ok());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        1
    );

    // With a long expiry nothing goes.
    let patient = UploadExpiry::new(store.clone(), metrics.clone(), Duration::from_secs(3600));
    assert_eq!(patient.run_once().await.unwrap(), 0);
    assert!(metrics.render().contains("wharf_uploads_expired_total 1"));
}
