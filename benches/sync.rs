//! A sync pass over unchanged tags: what the upstream sees (it must be the tag
//! list and one HEAD per tag, nothing else) and how long the pass takes. The
//! upstream is a second wharf (hosted) holding `BENCH_TAGS` (300) tags, each
//! its own small image; the mirror has one `[[sync]]` rule over all of them.
//! The mirror's first pass (at start) fills the cache; the measured pass runs
//! through `POST /_wharf/v1/sync` once everything is here. Upstream traffic is
//! read from the upstream's own metrics.
//!
//! Run: `cargo bench --bench sync`.

mod common;

use std::time::{Duration, Instant};

use common::table::{Goal, goal, goals_header};
use common::{OCI_MANIFEST, env_or, seeded_bytes, sha256_hex, start_wharf_with, subdir};

/// Requests the server answered, by `method,route` (token and metrics excluded).
fn requests(base: &str) -> std::collections::BTreeMap<String, f64> {
    let text = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{"))
    {
        let field = |k: &str| {
            l.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let (method, route) = (field("method"), field("route"));
        if route == "token" || route == "metrics" {
            continue;
        }
        let n: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(format!("{method} {route}")).or_insert(0.0) += n;
    }
    out
}

fn delta(
    after: &std::collections::BTreeMap<String, f64>,
    before: &std::collections::BTreeMap<String, f64>,
    key: &str,
) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

fn put(c: &reqwest::blocking::Client, url: String, ct: &str, body: Vec<u8>) {
    let r = c
        .put(url)
        .header("content-type", ct)
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

fn push_blob(c: &reqwest::blocking::Client, base: &str, repo: &str, b: &[u8]) -> String {
    let d = format!("sha256:{}", sha256_hex(b));
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    put(
        c,
        format!("{base}{loc}{sep}digest={d}"),
        "application/octet-stream",
        b.to_vec(),
    );
    d
}

fn main() {
    let tags: usize = env_or("BENCH_TAGS", 300);
    let dir = tempfile::tempdir().unwrap();
    let hub = start_wharf_with(&subdir(dir.path(), "hub"), None, "[hosted]\nonly = true\n");
    let c = reqwest::blocking::Client::new();
    let repo = "library/warm";
    let layer = seeded_bytes(64 << 10, 1);
    let layer_d = push_blob(&c, &hub.base, repo, &layer);
    for i in 0..tags {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"tag":{i}}}"#
        );
        let config_d = push_blob(&c, &hub.base, repo, config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}],
        });
        put(
            &c,
            format!("{}/v2/{repo}/manifests/t{i}", hub.base),
            OCI_MANIFEST,
            serde_json::to_vec(&manifest).unwrap(),
        );
    }
    let mirror = start_wharf_with(
        &subdir(dir.path(), "mirror"),
        None,
        &format!(
            "[[upstream]]\nname = \"docker.io\"\nurl = \"{}\"\ndefault = true\n[[sync]]\nimage = \"docker.io/{repo}\"\ntags = [\"t*\"]\nevery = \"1h\"\n",
            hub.base
        ),
    );
    // The pass at start fills the cache.
    let deadline = Instant::now() + Duration::from_secs(600);
    let cold = loop {
        let v: serde_json::Value = c
            .get(format!("{}/_wharf/v1/sync", mirror.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if v["worker"]["running"] == false && !v["rules"][0]["last"].is_null() {
            break v["rules"][0]["last"].clone();
        }
        assert!(Instant::now() < deadline, "the first pass did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cold["fetched"], tags, "cold pass: {cold}");

    let before = requests(&hub.base);
    let t = Instant::now();
    let r = c
        .post(format!("{}/_wharf/v1/sync", mirror.base))
        .timeout(Duration::from_secs(600))
        .send()
        .unwrap();
    let wall = t.elapsed();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().unwrap();
    let after = requests(&hub.base);
    let rule = &report["rules"][0];
    let heads = delta(&after, &before, "HEAD manifest");
    let lists = delta(&after, &before, "GET tags");
    let gets = delta(&after, &before, "GET manifest") + delta(&after, &before, "GET blob");
    let total: f64 = after.values().sum::<f64>() - before.values().sum::<f64>();

    println!("\nsync pass over {tags} unchanged tags (upstream: a wharf on loopback)");
    println!("{:<48} {:>12}", "measure", "wharf");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!("{:<48} {:>12}", "tags matched", n(&rule["matched"]));
    println!("{:<48} {:>12}", "tags unchanged", n(&rule["unchanged"]));
    println!("{:<48} {:>12.0}", "upstream tag list pages", lists);
    println!("{:<48} {:>12.0}", "upstream manifest HEADs", heads);
    println!("{:<48} {:>12.0}", "upstream GETs (manifests, blobs)", gets);
    println!("{:<48} {:>12.0}", "upstream requests in all", total);
    println!(
        "{:<48} {:>12.1}",
        "pass wall time (ms)",
        wall.as_secs_f64() * 1e3
    );
    println!(
        "{:<48} {:>12.2}",
        "ms per tag",
        wall.as_secs_f64() * 1e3 / tags as f64
    );
    println!(
        "{:<48} {:>12}",
        "cold pass (first fill) ms", cold["duration_ms"]
    );
    println!();
    goals_header("issue 11");
    goal(
        "upstream requests - (HEADs per tag + list pages)",
        Some(total - (tags as f64 + lists)),
        Goal::Exactly(0.0),
    );
    goal(
        "upstream HEADs per tag",
        Some(heads / tags as f64),
        Goal::Exactly(1.0),
    );
}
