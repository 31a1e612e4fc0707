//! `/metrics` is complete and bounded: the series move as a pull goes through
//! a mirror (miss, then hit; bytes by source upstream, then local), as a peer
//! serves a blob, as a push holds an upload open, as gc and eviction remove
//! content and as an upstream fails; no client can grow the series set; every
//! family is documented in README; the example alert rules parse and name
//! only metrics that exist.

mod common;

use std::path::Path;

use common::image::{Image, tar_with_file};
use common::metrics::{Exposition, scrape};
use common::upstreams::{answer, fake, hub, mirror_config, publish};
use common::{Wharf, bytes, digest, get_oci, http, push_blob, wait_for};
use wharf::config::Config;

/// Pulls `repo:tag` through `w` like a client: the manifest, then every blob.
async fn pull(w: &Wharf, repo: &str, tag: &str, img: &Image) {
    let r = get_oci(w, &format!("/v2/{repo}/manifests/{tag}")).await;
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    for (d, b) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} {d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
}

fn blob_bytes(img: &Image) -> f64 {
    img.blobs().iter().map(|(_, b)| b.len() as f64).sum()
}

fn mirror(root: &Path, upstream: &str, extra: &str) -> Config {
    common::config(root, &mirror_config(upstream, "", extra))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_through_the_mirror_counts_a_miss_then_a_hit_and_bytes_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("l", &bytes(300_000, 1))]);
    publish(&hub, "library/app", "1", &img).await;
    let m = Wharf::start_config(mirror(&dir.path().join("m"), &hub.base, "")).await;
    let before = scrape(&m).await;
    assert_eq!(before.value("wharf_served_bytes_total", &[]), 0.0);
    assert_eq!(
        before.value("wharf_storage_bytes", &[("origin", "cached")]),
        0.0
    );

    pull(&m, "library/app", "1", &img).await;
    let blobs = blob_bytes(&img);
    let manifest = img.manifest.len() as f64;
    // The client has its last byte a moment before the download is committed
    // to the store and the request is counted: wait until the miss has
    // settled (the counters are then checked exactly).
    let settled = |e: &Exposition| {
        e.value("wharf_downloads_in_flight", &[]) == 0.0
            && e.value("wharf_storage_bytes", &[("origin", "cached")]) == blobs + manifest
            && e.value(
                "wharf_http_request_duration_seconds_count",
                &[("route", "blob")],
            ) == 2.0
    };
    let mut after_miss = scrape(&m).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !settled(&after_miss) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after_miss = scrape(&m).await;
    }
    let cache = |e: &Exposition, kind, result| {
        e.value(
            "wharf_cache_requests_total",
            &[("kind", kind), ("result", result)],
        )
    };
    assert_eq!(cache(&after_miss, "blob", "MISS"), 2.0, "config and layer");
    assert_eq!(cache(&after_miss, "manifest", "MISS"), 1.0);
    assert_eq!(cache(&after_miss, "blob", "HIT"), 0.0);
    let served =
        |e: &Exposition, source| e.value("wharf_served_bytes_total", &[("source", source)]);
    assert_eq!(served(&after_miss, "upstream"), blobs + manifest);
    assert_eq!(served(&after_miss, "local"), 0.0);
    assert_eq!(
        after_miss.value(
            "wharf_upstream_blob_bytes_total",
            &[("upstream", "docker.io")]
        ),
        blobs
    );
    let ok_calls = after_miss.value(
        "wharf_upstream_requests_total",
        &[("upstream", "docker.io"), ("result", "ok")],
    );
    assert!(ok_calls >= 3.0, "manifest and two blobs asked: {ok_calls}");
    assert_eq!(
        after_miss.value("wharf_upstream_errors_total", &[("upstream", "docker.io")]),
        0.0
    );
    assert_eq!(
        after_miss.value(
            "wharf_http_requests_total",
            &[("route", "blob"), ("method", "GET"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        after_miss.value(
            "wharf_http_request_duration_seconds_count",
            &[("route", "blob")]
        ),
        2.0
    );
    // Cached bytes are a running total: exact once the download is in.
    assert_eq!(
        after_miss.value("wharf_storage_bytes", &[("origin", "cached")]),
        blobs + manifest
    );
    assert_eq!(after_miss.value("wharf_downloads_in_flight", &[]), 0.0);

    pull(&m, "library/app", "1", &img).await;
    let after_hit = scrape(&m).await;
    assert_eq!(cache(&after_hit, "blob", "HIT"), 2.0);
    assert_eq!(cache(&after_hit, "manifest", "HIT"), 1.0);
    assert_eq!(served(&after_hit, "local"), blobs + manifest);
    assert_eq!(
        served(&after_hit, "upstream"),
        blobs + manifest,
        "unchanged"
    );
    assert_eq!(
        after_hit.value(
            "wharf_upstream_requests_total",
            &[("upstream", "docker.io"), ("result", "ok")]
        ),
        ok_calls,
        "a hit within the TTL asks nothing"
    );
    // The paced walk gives the file counts by origin.
    wait_for(30, "cached files counted", || {
        let m = &m;
        async move {
            scrape(m)
                .await
                .value("wharf_storage_blobs", &[("origin", "cached")])
                == 3.0
        }
    })
    .await;
    let e = scrape(&m).await;
    assert!(e.value("wharf_disk_total_bytes", &[]) > 0.0);
    assert!(e.value("wharf_disk_free_bytes", &[]) > 0.0);
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_from_a_lan_peer_counts_as_peer_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("p", &bytes(2 << 20, 2));
    let img = Image::new(vec![layer.clone()]);
    publish(&hub, "library/peered", "1", &img).await;
    let a = Wharf::start_config(mirror(&dir.path().join("a"), &hub.base, "")).await;
    pull(&a, "library/peered", "1", &img).await;
    let peer_lines = format!("[[peer]]\nurl = \"{}\"\n", a.base);
    let b = Wharf::start_config(mirror(&dir.path().join("b"), &hub.base, &peer_lines)).await;
    let d = digest(&layer);
    let r = http()
        .get(b.url(&format!("/v2/library/peered/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "PEER");
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.as_slice());
    let e = scrape(&b).await;
    let n = layer.len() as f64;
    assert_eq!(
        e.value("wharf_served_bytes_total", &[("source", "peer")]),
        n
    );
    assert_eq!(
        e.value("wharf_served_bytes_total", &[("source", "upstream")]),
        0.0
    );
    assert_eq!(
        e.value("wharf_peer_blob_bytes_total", &[("peer", a.base.as_str())]),
        n
    );
    assert_eq!(
        e.value(
            "wharf_cache_requests_total",
            &[("kind", "blob"), ("result", "PEER")]
        ),
        1.0
    );
    assert_eq!(e.value("wharf_upstream_blob_bytes_total", &[]), 0.0);
    b.stop().await;
    a.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_upload_shows_then_closes_and_pushed_bytes_grow() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    assert_eq!(scrape(&w).await.value("wharf_uploads_open", &[]), 0.0);
    let data = bytes(100_000, 3);
    let c = http();
    let r = c
        .post(w.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let during = scrape(&w).await;
    assert_eq!(during.value("wharf_uploads_open", &[]), 1.0);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(w.url(&format!("{loc}{sep}digest={}", digest(&data))))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let after = scrape(&w).await;
    assert_eq!(after.value("wharf_uploads_open", &[]), 0.0);
    assert_eq!(
        after.value("wharf_upload_bytes_total", &[]),
        data.len() as f64
    );
    let n = data.len() as f64;
    wait_for(30, "pushed bytes counted", || {
        let w = &w;
        async move {
            let e = scrape(w).await;
            e.value("wharf_storage_bytes", &[("origin", "pushed")]) == n
                && e.value("wharf_storage_blobs", &[("origin", "pushed")]) == 1.0
        }
    })
    .await;
    // Served from the store: local bytes.
    let r = c
        .get(w.url(&format!("/v2/team/app/blobs/{}", digest(&data))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), data.len());
    let e = scrape(&w).await;
    assert_eq!(
        e.value("wharf_served_bytes_total", &[("source", "local")]),
        data.len() as f64
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_counts_what_it_sweeps_and_the_pushed_bytes_fall() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[gc]\ninterval = \"0\"\ngrace = \"1s\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&dir.path().join("data"), extra)).await;
    let orphan = bytes(50_000, 4);
    push_blob(&w, "team/app", &orphan).await;
    wait_for(30, "the orphan counted as pushed", || {
        let w = &w;
        async move {
            scrape(w)
                .await
                .value("wharf_storage_bytes", &[("origin", "pushed")])
                == 50_000.0
        }
    })
    .await;
    // Older than the grace, named by nothing: the next pass sweeps it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lc.gc.run_now().await.unwrap().swept_blobs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "gc never swept the orphan"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let e = scrape(&w).await;
    assert_eq!(e.value("wharf_gc_swept_blobs_total", &[]), 1.0);
    assert_eq!(e.value("wharf_gc_swept_bytes_total", &[]), 50_000.0);
    assert!(
        e.value(
            "wharf_worker_runs_total",
            &[("worker", "gc"), ("result", "ok")]
        ) >= 1.0
    );
    wait_for(30, "pushed bytes fall to 0", || {
        let w = &w;
        async move {
            scrape(w)
                .await
                .value("wharf_storage_bytes", &[("origin", "pushed")])
                == 0.0
        }
    })
    .await;
    drop(lc);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_counts_what_it_evicts_against_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let images: Vec<Image> = (0..3)
        .map(|i| Image::new(vec![tar_with_file("l", &bytes(200_000, 10 + i))]))
        .collect();
    for (i, img) in images.iter().enumerate() {
        publish(&hub, &format!("library/e{i}"), "1", img).await;
    }
    let budget = 450_000u64;
    let text = format!(
        "{}\n[gc]\ninterval = \"0\"\n[storage]\nroot = {:?}\nmax_cache_size = \"{budget}\"\nlow_watermark = 0.5\n",
        mirror_config(&hub.base, "", ""),
        dir.path().join("m").display().to_string()
    );
    let m = Wharf::start_config(Config::parse(&text, Path::new("m.toml")).unwrap()).await;
    let e = scrape(&m).await;
    assert_eq!(e.value("wharf_cache_budget_bytes", &[]), budget as f64);
    assert_eq!(e.value("wharf_evicted_bytes_total", &[]), 0.0);
    for (i, img) in images.iter().enumerate() {
        pull(&m, &format!("library/e{i}"), "1", img).await;
    }
    wait_for(30, "eviction back under the budget", || {
        let m = &m;
        async move {
            let e = scrape(m).await;
            e.value("wharf_evicted_bytes_total", &[]) > 0.0
                && e.value("wharf_storage_bytes", &[("origin", "cached")]) <= budget as f64
        }
    })
    .await;
    let e = scrape(&m).await;
    assert!(e.value("wharf_evicted_blobs_total", &[]) >= 1.0);
    assert_eq!(
        e.value("wharf_cache_bytes", &[]),
        e.value("wharf_storage_bytes", &[("origin", "cached")])
    );
    assert!(
        e.value(
            "wharf_worker_runs_total",
            &[("worker", "evict"), ("result", "ok")]
        ) >= 1.0
    );
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_upstream_counts_errors_by_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let sick = fake(|_| answer(503, &[], "down")).await;
    let m = Wharf::start_config(mirror(&dir.path().join("m"), &sick.url, "")).await;
    let before = scrape(&m).await;
    assert_eq!(
        before.value(
            "wharf_upstream_errors_total",
            &[("upstream", "docker.io"), ("kind", "unavailable")]
        ),
        0.0,
        "the series exists before the first failure"
    );
    assert!(before.has("wharf_upstream_errors_total"));
    let r = get_oci(&m, "/v2/library/nginx/manifests/latest").await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let e = scrape(&m).await;
    assert!(
        e.value(
            "wharf_upstream_errors_total",
            &[("upstream", "docker.io"), ("kind", "unavailable")]
        ) >= 1.0
    );
    assert!(
        e.value(
            "wharf_upstream_requests_total",
            &[("upstream", "docker.io"), ("result", "unavailable")]
        ) >= 1.0
    );
    assert_eq!(
        e.value(
            "wharf_upstream_requests_total",
            &[("upstream", "docker.io"), ("result", "ok")]
        ),
        0.0
    );
    assert!(
        e.value(
            "wharf_http_requests_total",
            &[("route", "manifest"), ("status", r.status().as_str())]
        ) >= 1.0
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_bogus_requests_add_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    let send = |i: usize| {
        let c = c.clone();
        let w = &w;
        async move {
            let method = reqwest::Method::from_bytes(format!("BOGUS{i}").as_bytes()).unwrap();
            let requests = [
                c.request(method, w.url(&format!("/v2/x{i}/manifests/t{i}"))),
                c.get(w.url(&format!("/nowhere/{i}/{}", "y".repeat(i % 50)))),
                c.get(w.url(&format!("/v2/name{i}/manifests/tag{i}?ns=host{i}.example"))),
                c.head(w.url(&format!("/v2/repo{i}/blobs/sha256:{:064x}", i))),
                c.delete(w.url(&format!("/v2/repo{i}/tags/list?n={i}"))),
                c.get(w.url(&format!("/_wharf/v1/bogus{i}"))),
            ];
            for r in requests {
                let _ = r.send().await.unwrap().bytes().await;
            }
        }
    };
    let count = |e: &Exposition| {
        e.samples
            .iter()
            .filter(|s| s.name != "wharf_worker_runs_total")
            .count()
    };
    // Every shape once, so its route and status series exist (the scrape's
    // own too).
    scrape(&w).await;
    for i in 0..20 {
        send(i).await;
    }
    let warm = scrape(&w).await;
    let (series, families) = (
        count(&warm),
        warm.families
            .keys()
            .filter(|f| f.as_str() != "wharf_worker_runs")
            .count(),
    );
    for i in 20..1020 {
        send(i).await;
    }
    let after = scrape(&w).await;
    // Worker passes come with time, not with requests.
    assert_eq!(
        after
            .families
            .keys()
            .filter(|f| f.as_str() != "wharf_worker_runs")
            .count(),
        families,
        "{:?} vs {:?}",
        after.families.keys(),
        warm.families.keys()
    );
    let grown: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.name != "wharf_worker_runs_total")
        .filter(|s| {
            !warm
                .samples
                .iter()
                .any(|o| o.name == s.name && o.labels == s.labels)
        })
        .collect();
    assert!(grown.is_empty(), "new series: {grown:?}");
    assert_eq!(count(&after), series);
    for s in &after.samples {
        for v in s.labels.values() {
            assert!(
                !v.contains("BOGUS") && !v.contains("name1") && !v.contains("example"),
                "a client's value as a label: {s:?}"
            );
        }
    }
    w.stop().await;
}

/// README's metrics section: from its heading to the next heading of the
/// same or a higher level.
fn readme_metrics_section() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n### Metrics\n")
        .expect("README has a ### Metrics section");
    let rest = &readme[start + 1..];
    let end = rest[4..]
        .find("\n## ")
        .into_iter()
        .chain(rest[4..].find("\n### "))
        .min()
        .map(|i| i + 4)
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// Every registered family (name, type), whether or not it has a series.
fn families() -> Vec<(String, &'static str)> {
    wharf::metrics::Metrics::new().families().to_vec()
}

/// The names samples of each family take, as queries and README write them.
fn sample_names() -> Vec<String> {
    families()
        .into_iter()
        .flat_map(|(f, ty)| match ty {
            "counter" => vec![format!("{f}_total")],
            "histogram" => ["bucket", "sum", "count"]
                .iter()
                .map(|s| format!("{f}_{s}"))
                .chain([f.clone()])
                .collect(),
            _ => vec![f],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_family_is_in_the_readme_table() {
    let families = families();
    assert!(families.len() >= 40, "{families:?}");
    // What a live wharf prints is what the catalogue lists.
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let live = scrape(&w).await;
    w.stop().await;
    for (f, ty) in &live.families {
        assert!(
            families.iter().any(|(n, t)| n == f && t == ty),
            "{f} ({ty}) is printed but not catalogued"
        );
    }
    let section = readme_metrics_section();
    let missing: Vec<String> = families
        .iter()
        .map(|(f, ty)| match *ty {
            "counter" => format!("`{f}_total"),
            _ => format!("`{f}"),
        })
        .filter(|name| {
            // The name followed by `{` or a backtick: not a prefix of a longer name.
            !["{", "`"]
                .iter()
                .any(|end| section.contains(&format!("{name}{end}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in README's metrics table: {missing:?}"
    );
    // And the section names nothing that does not exist.
    let names = sample_names();
    for word in section.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("wharf_") {
            assert!(
                names.iter().any(|d| d == word),
                "README names {word}, which /metrics does not have"
            );
        }
    }
}

/// The `wharf_...` metric names a PromQL expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("wharf_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_example_alert_rules_parse_and_name_only_real_metrics() {
    use yaml_rust2::YamlLoader;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus-alerts.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    assert_eq!(docs.len(), 1);
    let groups = docs[0]["groups"].as_vec().expect("a groups: list");
    assert!(!groups.is_empty());
    let declared = sample_names();
    let mut alerts = Vec::new();
    for g in groups {
        assert!(g["name"].as_str().is_some(), "a group has a name");
        for rule in g["rules"].as_vec().expect("a group has rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("an alert has an expr");
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{name} uses a wharf metric");
            for m in used {
                assert!(
                    declared.contains(&m),
                    "{name} uses {m}, which /metrics does not have"
                );
            }
            alerts.push(name.to_owned());
        }
    }
    for want in [
        "WharfUpstreamDown",
        "WharfCacheOverBudget",
        "WharfDiskNearlyFull",
        "WharfReplicationQueueGrowing",
        "WharfSyncFailing",
        "WharfHigh5xxRate",
    ] {
        assert!(alerts.iter().any(|a| a == want), "{want} in {alerts:?}");
    }
}
