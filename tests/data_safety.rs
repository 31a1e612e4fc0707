//! Data safety of the store across real start-ups and requests: readiness
//! probes do not trip over each other.

mod common;

use common::{Wharf, http};

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_readiness_probes_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    // Several rounds: the probes of one round race on the same instant.
    for round in 0..10 {
        let mut probes = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let url = w.url("/readyz");
            probes.spawn(async move { http().get(url).send().await.unwrap().status() });
        }
        while let Some(s) = probes.join_next().await {
            assert_eq!(s.unwrap(), 200, "round {round}");
        }
    }
    w.stop().await;
}
