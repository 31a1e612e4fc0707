//! Eviction keeps mirrored content under `[storage] max_cache_size`: the least
//! recently read cached content goes, down to the low watermark, within
//! seconds of the budget being passed; pinned and pushed images stay; content
//! being read stays until its reader is done; evicted content comes back from
//! the upstream with the same digests; a kill -9 in the middle leaves a store
//! that starts clean.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::disk::{content_on_disk, files_under};
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, hub_blob_bytes, metric, mirror_config, publish};
use common::wait_for;
use common::{Wharf, WharfProcess, bytes, digest, get_oci, http, push_image};
use wharf::config::Config;
use wharf::oci::Reference;

/// A mirror of `hub` with a cache budget and a low watermark of one half.
fn mirror_cfg(root: &Path, hub: &Wharf, budget: u64) -> Config {
    let text = format!(
        "{}\n[hosted]\nprefixes = [\"team/\"]\n[gc]\ninterval = \"0\"\n[storage]\nroot = {:?}\nmax_cache_size = \"{budget}\"\nlow_watermark = 0.5\n",
        mirror_config(&hub.base, "manifest_ttl = \"1h\"\n", ""),
        root.display().to_string()
    );
    Config::parse(&text, Path::new("mirror.toml")).unwrap()
}

/// Pulls `repo:tag` through `w` like a client (manifest, then every blob) and
/// checks the bytes; returns the manifest digest.
async fn pull(w: &Wharf, repo: &str, tag: &str, img: &Image) -> String {
    let r = get_oci(w, &format!("/v2/{repo}/manifests/{tag}")).await;
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    let d = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    for (bd, b) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/blobs/{bd}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} {bd}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b, "{repo} {bd}");
    }
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_filled_past_its_budget_evicts_down_to_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let images: Vec<Image> = (0..4)
        .map(|i| Image::new(vec![tar_with_file("l", &bytes(150_000, 10 + i))]))
        .collect();
    for (i, img) in images.iter().enumerate() {
        publish(&hub, &format!("library/img{i}"), "1", img).await;
    }
    let budget = 500_000;
    let (m, lc) = Wharf::start_observed(mirror_cfg(&dir.path().join("mirror"), &hub, budget)).await;
    // Pushed content never counts against the budget nor goes.
    let pushed_layers = vec![bytes(400_000, 1)];
    let (_, pushed) = push_image(&m, "team/app", "1", &pushed_layers).await;

    let mut digests = Vec::new();
    digests.push(pull(&m, "library/img0", "1", &images[0]).await);
    let img0: wharf::oci::RepoName = "docker.io/library/img0".parse().unwrap();
    let tag1 = Reference::Tag("1".parse().unwrap());
    let pinned = lc.store().pin(&img0, &tag1).await.unwrap();
    assert_eq!(pinned.to_string(), digests[0]);
    assert_eq!(
        lc.store().pins().await.unwrap()[0].reference,
        "docker.io/library/img0:1"
    );
    for (i, img) in images.iter().enumerate().skip(1) {
        digests.push(pull(&m, &format!("library/img{i}"), "1", img).await);
    }
    // The fourth image passed the budget: that write kicked eviction (whose
    // interval is a minute) within seconds.
    wait_for(30, "an eviction pass kicked by the budget", || {
        let m = &m;
        async move { metric(m, "wharf_evicted_blobs_total").await > 0.0 }
    })
    .await;
    // A pass may have left the layer a client was still reading; once the
    // readers are done, the cache is under the low watermark.
    let store = lc.store().clone();
    wait_for(30, "no reader left", || {
        let store = store.clone();
        async move { store.in_use().is_empty() }
    })
    .await;
    let report = lc.evict.run_now().await.unwrap();
    assert!(report.cached_bytes_after <= budget / 2, "{report:?}");
    let usage = lc.store().usage().await.unwrap();
    assert!(usage.cached_bytes <= budget / 2, "{usage:?}");
    assert_eq!(
        metric(&m, "wharf_cache_bytes").await as u64,
        usage.cached_bytes,
        "the running total matches the index"
    );
    assert_eq!(metric(&m, "wharf_cache_budget_bytes").await as u64, budget);
    assert!(metric(&m, "wharf_evicted_blobs_total").await >= 6.0);
    assert!(metric(&m, "wharf_evicted_bytes_total").await >= 2.0 * 150_000.0);
    let status = lc.evict.control.status();
    assert!(status.runs >= 2, "{status:?}");
    assert_eq!((usage.blobs, usage.bytes), content_on_disk(&m.root));
    assert!(usage.pushed_bytes >= 400_000);

    // Pinned and pushed images pull from the cache; the pinned one was never
    // fetched again.
    let fetched = hub_blob_bytes(&hub).await;
    for (d, _) in images[0].blobs() {
        let r = http()
            .get(m.url(&format!("/v2/library/img0/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT", "pinned {d}");
    }
    pull(&m, "library/img0", "1", &images[0]).await;
    let r = get_oci(&m, "/v2/team/app/manifests/1").await;
    assert_eq!(r.headers()["docker-content-digest"], pushed.as_str());
    for b in &pushed_layers {
        let r = http()
            .get(m.url(&format!("/v2/team/app/blobs/{}", digest(b))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), b.as_slice());
    }
    assert_eq!(hub_blob_bytes(&hub).await, fetched);

    // Evicted images come back from the upstream, same digests, same bytes.
    for (i, img) in images.iter().enumerate().skip(1) {
        let d = pull(&m, &format!("library/img{i}"), "1", img).await;
        assert_eq!(d, digests[i]);
    }
    assert!(
        hub_blob_bytes(&hub).await >= fetched + 2.0 * 150_000.0,
        "evicted layers were fetched again"
    );
    assert!(lc.store().unpin(&img0, &tag1).await.unwrap());
    assert!(lc.store().pins().await.unwrap().is_empty());
    drop(lc);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_being_read_are_left_until_their_readers_finish() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    // Larger than what loopback socket buffers hold, so a response that
    // stops being read cannot finish on the server side.
    let big_size = 24 << 20;
    let cached = Image::new(vec![tar_with_file("c", &bytes(big_size, 1))]);
    let fresh = Image::new(vec![tar_with_file("f", &bytes(big_size, 2))]);
    let small = Image::new(vec![tar_with_file("s", &bytes(20_000, 3))]);
    publish(&hub, "library/cached", "1", &cached).await;
    publish(&hub, "library/fresh", "1", &fresh).await;
    publish(&hub, "library/small", "1", &small).await;
    // Room for one big layer: two of them are far past the budget.
    let budget = 32 << 20;
    let (m, lc) = Wharf::start_observed(mirror_cfg(&dir.path().join("mirror"), &hub, budget)).await;
    pull(&m, "library/cached", "1", &cached).await;
    let big = |img: &Image| img.blobs()[1].0.clone();

    // A slow client reads the cached layer (a HIT, from the file) and another
    // the fresh one (a MISS, through the download): each takes one chunk and
    // stops reading.
    let mut readers = Vec::new();
    for (repo, img) in [("library/cached", &cached), ("library/fresh", &fresh)] {
        let r = get_oci(&m, &format!("/v2/{repo}/manifests/1")).await;
        assert_eq!(r.status(), 200);
        let mut r = http()
            .get(m.url(&format!("/v2/{repo}/blobs/{}", big(img))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let first = r.chunk().await.unwrap().unwrap();
        readers.push((r, first.to_vec(), img));
    }
    pull(&m, "library/small", "1", &small).await;
    let store = lc.store().clone();
    // The fresh layer is stored (its download finished) while its reader
    // waits; the cache is past its budget, and the passes that kicks start
    // leave both layers alone.
    let fresh_local: wharf::oci::RepoName = "docker.io/library/fresh".parse().unwrap();
    let fresh_layer: wharf::oci::Digest = big(&fresh).parse().unwrap();
    wait_for(30, "the fresh layer stored", || {
        let (store, repo, d) = (store.clone(), fresh_local.clone(), fresh_layer.clone());
        async move { store.blob_size(&repo, &d).await.unwrap().is_some() }
    })
    .await;
    let report = lc.evict.run_now().await.unwrap();
    assert_eq!(report.skipped_in_use, 2, "{report:?}");
    assert!(
        report.cached_bytes_after > budget / 2,
        "the big layers stayed: {report:?}"
    );

    // Both readers finish with the right bytes.
    for (mut r, mut got, img) in readers {
        while let Some(c) = r.chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(digest(&got), big(img));
    }
    // Once nobody reads them, they go, and come back from the upstream.
    let fetched = hub_blob_bytes(&hub).await;
    wait_for(30, "the readers' uses ended", || {
        let store = store.clone();
        async move { store.in_use().is_empty() }
    })
    .await;
    let report = lc.evict.run_now().await.unwrap();
    assert_eq!(report.skipped_in_use, 0, "{report:?}");
    assert!(report.cached_bytes_after <= budget / 2, "{report:?}");
    pull(&m, "library/cached", "1", &cached).await;
    assert!(hub_blob_bytes(&hub).await >= fetched + big_size as f64);
    drop(lc);
    m.stop().await;
}

/// Waits until a child process has no download in flight (each is stored
/// after its client got the last byte).
fn settled(w: &WharfProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::blocking::get(w.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        if text.lines().any(|l| l == "wharf_downloads_in_flight 0") {
            return;
        }
        assert!(Instant::now() < deadline, "downloads never settled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pulls `repo:1` from a child process and checks every byte (blocking).
fn pull_blocking(w: &WharfProcess, repo: &str, img: &Image) {
    let c = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = c
        .get(w.url(&format!("/v2/{repo}/manifests/1")))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{repo}");
    assert_eq!(r.bytes().unwrap().as_ref(), img.manifest.as_slice());
    for (d, b) in img.blobs() {
        let r = c
            .get(w.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} {d}");
        assert_eq!(r.bytes().unwrap().as_ref(), b);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_an_eviction_leaves_a_store_that_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    // Many small layers: their files take a while to remove.
    let many = Image::new((0..300).map(|i| bytes(1_000, 1_000 + i)).collect());
    let kept = Image::new(vec![tar_with_file("k", &bytes(50_000, 7))]);
    publish(&hub, "library/many", "1", &many).await;
    publish(&hub, "library/kept", "1", &kept).await;
    let root = dir.path().join("mirror");
    let upstream = mirror_config(
        &hub.base,
        "manifest_ttl = \"1h\"\n",
        "[hosted]\nprefixes = [\"team/\"]\n",
    );
    let (d, r) = (dir.path().to_path_buf(), root.clone());
    let (lost, left) = tokio::task::spawn_blocking(move || {
        // Sequential pulls of small blobs outrun the downloads' stores.
        let server = "downloads_per_client = 1024\nmax_downloads = 1024\n";
        let spawn = |storage: &str| WharfProcess::spawn_storage(&d, &r, server, storage, &upstream);
        let mut w = spawn("");
        pull_blocking(&w, "library/many", &many);
        pull_blocking(&w, "library/kept", &kept);
        settled(&w);
        common::terminate(&mut w.child);
        // A tight budget: the next start evicts at once, and dies mid-way.
        let mut w = spawn("max_cache_size = \"10KB\"\n");
        w.wait_log("evict: rows removed, removing files");
        w.child.kill().unwrap();
        w.child.wait().unwrap();
        let left = files_under(&r.join("blobs")).len();
        // Consistent: nothing was set aside as unaccounted, and every image
        // pulls (evicted ones from the hub again).
        let mut w = spawn("");
        pull_blocking(&w, "library/kept", &kept);
        pull_blocking(&w, "library/many", &many);
        settled(&w);
        common::terminate(&mut w.child);
        (files_under(&r.join("lost+found")).len(), left)
    })
    .await
    .unwrap();
    eprintln!("{left} content files were on disk when the process died");
    assert_eq!(lost, 0, "no orphan went to lost+found");
    let store = wharf::store::Store::open(&root).await.unwrap();
    let usage = store.usage().await.unwrap();
    assert_eq!((usage.blobs, usage.bytes), content_on_disk(&root));
    store.close();
}

/// Stores `data` as cached content of `repo`.
async fn store_cached(
    store: &wharf::store::Store,
    repo: &wharf::oci::RepoName,
    data: Vec<u8>,
) -> wharf::oci::Digest {
    let d = wharf::oci::Digest::of_bytes(&data);
    let mut w = store.new_writer().await.unwrap();
    w.write(bytes::Bytes::from(data)).await.unwrap();
    store
        .store_blob(w, repo, &d, wharf::store::Origin::Cached)
        .await
        .unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn last_read_times_reach_the_index_in_batches_and_at_close() {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let dir = tempfile::tempdir().unwrap();
    let store = wharf::store::Store::open(dir.path()).await.unwrap();
    let repo: wharf::oci::RepoName = "docker.io/library/x".parse().unwrap();
    let mut ds = Vec::new();
    for i in 0..3 {
        ds.push(store_cached(&store, &repo, bytes(1_000, 300 + i)).await);
    }
    // Stores and reads are counted in memory; one flush writes them all.
    for d in &ds {
        drop(store.open_blob(&repo, d).await.unwrap());
    }
    assert_eq!(store.unflushed_touches(), 3);
    assert_eq!(store.flush_access().await.unwrap(), 3);
    assert_eq!(store.unflushed_touches(), 0);
    // What is not flushed yet is written when the store closes; a touch of
    // something not stored gets no row.
    let late = store_cached(&store, &repo, bytes(1_000, 400)).await;
    drop(store.open_blob(&repo, &late).await.unwrap());
    store.touch(&wharf::oci::Digest::of_bytes(b"never stored"));
    assert_eq!(store.unflushed_touches(), 2);
    assert_eq!(store.cached_bytes(), 4_000);
    store.close();
    let db = redb::Database::create(dir.path().join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let access = txn.open_table(wharf::store::tables::ACCESS).unwrap();
    assert_eq!(access.len().unwrap(), 4, "only stored digests get rows");
    assert!(access.get(late.to_string().as_str()).unwrap().is_some());
}

/// Waits until the wall clock's second has moved past `after` (last-read
/// times are kept in seconds) and returns the new second.
async fn next_second(after: u64) -> u64 {
    let now = || wharf::store::unix_now();
    wait_for(5, "the clock to tick", || async move { now() > after }).await;
    now()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_read_longest_ago_goes_first_even_when_only_its_manifest_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let [a, b, c] = [1, 2, 3].map(|i| Image::new(vec![bytes(100_000, 20 + i)]));
    for (name, img) in [("a", &a), ("b", &b), ("c", &c)] {
        publish(&hub, &format!("library/{name}"), "1", img).await;
    }
    // Two images fit; the third passes the budget, and the low watermark
    // leaves room for two again.
    let text = format!(
        "{}\n[gc]\ninterval = \"0\"\n[storage]\nroot = {:?}\nmax_cache_size = \"250000\"\nlow_watermark = 0.85\n",
        mirror_config(&hub.base, "manifest_ttl = \"1h\"\n", ""),
        dir.path().join("mirror").display().to_string()
    );
    let (m, lc) = Wharf::start_observed(Config::parse(&text, Path::new("m.toml")).unwrap()).await;
    let t = next_second(0).await;
    pull(&m, "library/a", "1", &a).await;
    let t = next_second(t).await;
    pull(&m, "library/b", "1", &b).await;
    // A is used again by a client that has its layers already: it only
    // checks the tag (dockerd's HEAD) and fetches no blob.
    let t = next_second(t).await;
    let r = http()
        .head(m.url("/v2/library/a/manifests/1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    next_second(t).await;
    pull(&m, "library/c", "1", &c).await;
    wait_for(30, "an eviction pass kicked by the budget", || {
        let m = &m;
        async move { metric(m, "wharf_evicted_blobs_total").await > 0.0 }
    })
    .await;
    let store = lc.store().clone();
    wait_for(30, "no reader left", || {
        let store = store.clone();
        async move { store.in_use().is_empty() }
    })
    .await;
    let report = lc.evict.run_now().await.unwrap();
    assert!(report.cached_bytes_after <= 212_500, "{report:?}");

    // B, read longest ago, went whole; A and C stayed whole.
    let on_disk = |d: &str| common::disk::blob_path(&m.root, d).exists();
    for (d, _) in b.blobs() {
        assert!(!on_disk(&d), "B's {d} was read longest ago");
    }
    assert!(!on_disk(&digest(&b.manifest)));
    for img in [&a, &c] {
        for (d, _) in img.blobs() {
            assert!(on_disk(&d), "{d} was used more recently than B");
        }
        assert!(on_disk(&digest(&img.manifest)));
    }
    let fetched = hub_blob_bytes(&hub).await;
    pull(&m, "library/a", "1", &a).await;
    assert_eq!(
        hub_blob_bytes(&hub).await,
        fetched,
        "A pulls from the cache"
    );
    pull(&m, "library/b", "1", &b).await;
    assert!(
        hub_blob_bytes(&hub).await >= fetched + 100_000.0,
        "B comes back"
    );
    drop(lc);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_image_whose_references_are_unknown_keeps_its_whole_repository() {
    use wharf::oci::{Digest, RepoName};
    let dir = tempfile::tempdir().unwrap();
    let repo: RepoName = "docker.io/library/pinned".parse().unwrap();
    let other: RepoName = "docker.io/library/other".parse().unwrap();
    let img = Image::new(vec![bytes(50_000, 500)]);
    let loose = bytes(50_000, 501);
    let manifest = Digest::of_bytes(&img.manifest);
    let store = wharf::store::Store::open(dir.path()).await.unwrap();
    for (_, b) in img.blobs() {
        store_cached(&store, &repo, b.to_vec()).await;
    }
    let tag: wharf::oci::Tag = "1".parse().unwrap();
    store
        .put_cached_manifest(
            &repo,
            Some(&tag),
            &manifest,
            OCI_MANIFEST,
            bytes::Bytes::from(img.manifest.clone()),
            "docker.io",
        )
        .await
        .unwrap();
    store
        .pin(&repo, &Reference::Tag(tag.clone()))
        .await
        .unwrap();
    let loose = store_cached(&store, &other, loose).await;
    store.close();
    // The manifest's references become unknown: an older index, and content
    // that no longer parses (same length, so start-up does not notice).
    {
        let db = redb::Database::create(dir.path().join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(wharf::store::tables::MANIFEST_REFS)
            .unwrap();
        txn.delete_table(wharf::store::tables::SCHEMA).unwrap();
        txn.commit().unwrap();
    }
    let path = common::disk::blob_path(dir.path(), &manifest.to_string());
    let garbage: Vec<u8> = img.manifest.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&path, garbage).unwrap();

    let store = wharf::store::Store::open(dir.path()).await.unwrap();
    store.set_cache_budget(1_000);
    let out = store.evict(0.5).await.unwrap();
    assert_eq!(out.evicted_blobs, 1, "only the unpinned blob: {out:?}");
    assert!(!common::disk::blob_path(dir.path(), &loose.to_string()).exists());
    for (d, _) in img.blobs() {
        assert!(
            common::disk::blob_path(dir.path(), &d).exists(),
            "{d} is linked where a pin meets unknown references"
        );
    }
    store.close();
}

/// When pinned content alone is over the budget, a pass cannot get under it:
/// it says so once, and kicked passes (one per cache fill) rest instead of
/// scanning the index again and again; `wharf`'s on-demand pass still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_pinned_content_alone_exceeds_makes_kicked_passes_rest() {
    use wharf::workers::Worker;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // No budget while the image is stored and pinned (a kicked pass would
    // evict its layers before the pin); then one far below it.
    let (w, lc) = Wharf::start_observed(common::config(&root, "")).await;
    let store = lc.store().clone();
    let repo: wharf::oci::RepoName = "docker.io/library/big".parse().unwrap();
    let img = Image::new(vec![bytes(20_000, 600)]);
    for (_, b) in img.blobs() {
        store_cached(&store, &repo, b.to_vec()).await;
    }
    let tag: wharf::oci::Tag = "1".parse().unwrap();
    store
        .put_cached_manifest(
            &repo,
            Some(&tag),
            &wharf::oci::Digest::of_bytes(&img.manifest),
            OCI_MANIFEST,
            bytes::Bytes::from(img.manifest.clone()),
            "docker.io",
        )
        .await
        .unwrap();
    store.pin(&repo, &Reference::Tag(tag)).await.unwrap();
    store.set_cache_budget(1024);
    let first = lc.evict.worker.pass(true).await.unwrap();
    assert!(!first.resting);
    assert_eq!(first.evicted_blobs, 0, "{first:?}");
    assert!(first.skipped_pinned > 0 && first.cached_bytes_after > first.budget);
    let kicked = lc.evict.worker.run_once().await.unwrap();
    assert!(kicked.resting, "a kicked pass rests: {kicked:?}");
    let forced = lc.evict.worker.pass(true).await.unwrap();
    assert!(!forced.resting, "the on-demand pass runs: {forced:?}");
    drop(store);
    drop(lc);
    w.stop().await;
}
