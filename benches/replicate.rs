//! Replication (issue 11): wharf's `[[replicate]]` worker against `skopeo sync`
//! copying the same images from the same source wharf to a fresh target of
//! the same kind, same machine, same run. Targets: a wharf with htpasswd and
//! Docker-Hub-style token auth, and Distribution 2.8.2 (`docker-registry`)
//! with htpasswd (`BENCH_TARGETS=wharf` or `distribution` runs one).
//!
//! The set: `BENCH_IMAGES` images (default 50) of `BENCH_BASE` shared base
//! layers (default 9) plus one layer and one config of their own, every layer
//! `BENCH_LAYER_KIB` KiB (default 2560: about 150 MiB of distinct bytes, 1.2
//! GiB if every image were sent whole). Layers are gzip streams, so skopeo
//! passes them through unchanged. Pushed to a source wharf (release binary,
//! child process) as `team/app-NN:v1` (50 repositories: shared layers can
//! only cross once by cross-repository mounts) and, in a second source, as
//! `team/app:vNN` (one repository); `BENCH_LAYOUTS=many` or `one` runs one.
//!
//! - wharf: the source is restarted with a `[[replicate]]` rule naming the
//!   target (a rule added after the pushes); its start-up comparison queues
//!   every tag. Timed from the spawn of the source until its
//!   `GET /_wharf/v1/replicate` (polled every 20 ms) shows the whole set done
//!   (`items_done` ≥ tags, `queued` 0); the target is then checked to hold
//!   every tag with the pushed manifest bytes (outside the time and after
//!   its counters were read). The source's CPU seconds are its whole life.
//! - skopeo: `skopeo sync --src yaml --dest docker` of the same tags from the
//!   same source (restarted without the rule) to a second fresh target, run
//!   as `nobody` with a fresh `HOME`, so its blob-info cache starts cold; its
//!   CPU seconds are its rusage, and the source's CPU for serving it is shown
//!   beside.
//! - both: the blob bytes the target received (a wharf's
//!   `wharf_upload_bytes_total`; for Distribution, every byte clients sent
//!   it, counted by a TCP relay in front of it, with the connections they
//!   opened), the requests it served (`wharf_http_requests_total`, or
//!   Distribution's `registry_http_requests_total` from its debug listener,
//!   by method, route and status), its CPU seconds.
//!
//! Run: `cargo bench --bench replicate`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cpu::children_cpu_secs;
use common::distribution_debug;
use common::image_set::{ImageSet, Layout, image_set, missing, push_set};
use common::pair::{header, row};
use common::scrape::{Scrape, delta};
use common::table::{Goal, goal, goals_header};
use common::tcp_count::{Counted, relay};
use common::*;

/// The target's user (both targets read the same htpasswd).
const USER: (&str, &str) = ("bench", "bench-pw");

/// What one copy of the set measured.
struct Run {
    secs: f64,
    /// Blob bytes the target received.
    bytes: f64,
    /// Requests the target served, by `METHOD route status`.
    requests: BTreeMap<String, f64>,
    /// CPU seconds of the copier (the source wharf / skopeo).
    copier_cpu: f64,
    /// CPU seconds the source spent serving the copier (skopeo only).
    serving_cpu: Option<f64>,
    target_cpu: f64,
    /// Tags the target lacks afterwards (or holds with other bytes).
    missing: Vec<String>,
    /// Failed attempts the copier reported.
    failed: u64,
    /// Connections the copier opened to the target (Distribution only).
    connections: Option<f64>,
}

impl Run {
    fn requests_total(&self) -> f64 {
        self.requests.values().sum()
    }
}

/// The kinds of target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A wharf with htpasswd and token auth (anonymous pulls on, like
    /// Docker Hub), hosted only.
    Wharf,
    /// Distribution 2.8.2 with htpasswd (Basic), behind a byte-counting relay.
    Distribution,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wharf => "a wharf (htpasswd, token auth)",
            Kind::Distribution => "Distribution 2.8.2 (htpasswd, Basic)",
        }
    }
}

/// A fresh target registry.
struct Target {
    kind: Kind,
    server: Server,
    /// Where copiers send (the relay, for Distribution).
    url: String,
    /// Where its `/metrics` is served.
    metrics: String,
    relay: Option<Counted>,
}

/// What a target had received at one moment.
struct Reading {
    bytes: f64,
    requests: BTreeMap<String, f64>,
    connections: Option<f64>,
    cpu: f64,
}

impl Target {
    /// Starts one on `dir`; `None` when that kind is not installed.
    fn start(kind: Kind, dir: &Path, htpasswd: &Path) -> Option<Target> {
        match kind {
            Kind::Wharf => {
                let server = start_wharf_with(
                    dir,
                    None,
                    &format!(
                        "[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = true\n[hosted]\nonly = true\n",
                        htpasswd.display().to_string()
                    ),
                );
                Some(Target {
                    kind,
                    url: server.base.clone(),
                    metrics: server.base.clone(),
                    server,
                    relay: None,
                })
            }
            Kind::Distribution => {
                let d = distribution_debug::start(dir, htpasswd)?;
                let relay = relay(d.server.base.trim_start_matches("http://"));
                Some(Target {
                    kind,
                    url: relay.base.clone(),
                    metrics: d.metrics,
                    server: d.server,
                    relay: Some(relay),
                })
            }
        }
    }

    /// Its counters now.
    fn read(&self) -> Reading {
        let m = Scrape::of(&self.metrics);
        let cpu = self.server.cpu_secs();
        match self.kind {
            Kind::Wharf => Reading {
                bytes: m.sum("wharf_upload_bytes_total"),
                requests: m.requests(),
                connections: None,
                cpu,
            },
            Kind::Distribution => Reading {
                bytes: self
                    .relay
                    .as_ref()
                    .map(|r| r.bytes_in() as f64)
                    .unwrap_or(0.0),
                requests: m.counts(
                    "registry_http_requests_total",
                    &["method", "handler", "code"],
                ),
                connections: self.relay.as_ref().map(|r| r.connections() as f64),
                cpu,
            },
        }
    }
}

impl Run {
    /// A run of `secs` between two readings of its target.
    fn between(secs: f64, before: &Reading, after: &Reading) -> Run {
        Run {
            secs,
            bytes: after.bytes - before.bytes,
            requests: delta(&before.requests, &after.requests),
            copier_cpu: 0.0,
            serving_cpu: None,
            target_cpu: after.cpu - before.cpu,
            missing: Vec::new(),
            failed: 0,
            connections: after
                .connections
                .zip(before.connections)
                .map(|(a, b)| a - b),
        }
    }
}

/// The source wharf on `dir` (no users: loopback pushes and admin), with a
/// `[[replicate]]` rule to `to` when given.
fn start_source(dir: &Path, to: Option<(&str, &Path)>) -> Server {
    let rule = to
        .map(|(url, pw)| {
            format!(
                "[[replicate]]\nrepos = [\"team/*\"]\nto = {url:?}\nusername = {:?}\npassword_file = {:?}\n",
                USER.0,
                pw.display().to_string()
            )
        })
        .unwrap_or_default();
    start_wharf_with(dir, None, &format!("[hosted]\nonly = true\n{rule}"))
}

/// Stops `s` with SIGTERM (a clean close of its index) and waits for it.
fn stop(mut s: Server) {
    let _ = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The source's replication state for its only target.
fn replicate_state(base: &str) -> serde_json::Value {
    let v: serde_json::Value = reqwest::blocking::get(format!("{base}/_wharf/v1/replicate"))
        .unwrap()
        .json()
        .unwrap();
    v["targets"][0].clone()
}

/// wharf's replication of `set` from the source in `src_dir` to a fresh
/// target of `kind`; `None` when that kind is not installed.
fn wharf_run(
    kind: Kind,
    dir: &Path,
    src_dir: &Path,
    set: &ImageSet,
    htpasswd: &Path,
) -> Option<Run> {
    let pw = dir.join("target-pw");
    std::fs::write(&pw, format!("{}\n", USER.1)).unwrap();
    let t = Target::start(kind, &subdir(dir, "wharf-target"), htpasswd)?;
    let before = t.read();
    let tags = set.images.len() as u64;

    let start = Instant::now();
    let s = start_source(src_dir, Some((&t.url, &pw)));
    let deadline = start + Duration::from_secs(900);
    let state = loop {
        let st = replicate_state(&s.base);
        let done = st["items_done"].as_u64().unwrap_or(0);
        if done >= tags && st["queued"].as_u64() == Some(0) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not finish: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    let copier_cpu = s.cpu_secs();
    let mut run = Run::between(secs, &before, &t.read());
    run.copier_cpu = copier_cpu;
    run.failed = state["items_failed"].as_u64().unwrap_or(0);
    run.missing = missing(&t.server.base, USER, set);
    stop(s);
    Some(run)
}

/// `skopeo sync` of `set` from the source in `src_dir` to a fresh target;
/// `None` when skopeo is not installed.
fn skopeo_run(
    kind: Kind,
    dir: &Path,
    src_dir: &Path,
    set: &ImageSet,
    htpasswd: &Path,
) -> Option<Run> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return None;
    }
    let t = Target::start(kind, &subdir(dir, "skopeo-target"), htpasswd)?;
    let s = start_source(src_dir, None);
    // skopeo runs as nobody with its own HOME: a blob-info cache of its own,
    // empty at the start, as wharf's memory of the target is.
    let home = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = |base: &str| base.trim_start_matches("http://").to_owned();
    let mut yaml = format!("{}:\n  tls-verify: false\n  images:\n", host(&s.base));
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for img in &set.images {
        tags.entry(img.repo.clone())
            .or_default()
            .push(img.tag.clone());
    }
    for (repo, tags) in &tags {
        yaml.push_str(&format!("    {repo}: {tags:?}\n"));
    }
    let yaml_path = home.path().join("sync.yaml");
    std::fs::write(&yaml_path, yaml).unwrap();
    let log = std::fs::File::create(dir.join("skopeo.log")).unwrap();

    let (before, s_cpu) = (t.read(), s.cpu_secs());
    let cpu0 = children_cpu_secs();
    let start = Instant::now();
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "skopeo",
            "sync",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{}:{}", USER.0, USER.1),
        ])
        .arg(&yaml_path)
        .arg(format!("{}/team", host(&t.url)))
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let copier_cpu = children_cpu_secs() - cpu0;
    assert!(
        status.success(),
        "skopeo sync failed: see {}",
        dir.join("skopeo.log").display()
    );
    let mut run = Run::between(secs, &before, &t.read());
    run.copier_cpu = copier_cpu;
    run.serving_cpu = Some(s.cpu_secs() - s_cpu);
    run.missing = missing(&t.server.base, USER, set);
    stop(s);
    Some(run)
}

/// Pushes `set` to a fresh source; its directory.
fn seed_source(root: &Path, layout: Layout, set: &ImageSet) -> std::path::PathBuf {
    let src_dir = subdir(root, &format!("{layout:?}-source"));
    let s = start_source(&src_dir, None);
    push_set(&s.base, set);
    stop(s);
    src_dir
}

fn report(kind: Kind, layout: Layout, set: &ImageSet, w: &Run, k: Option<&Run>) {
    let mib = |b: f64| b / f64::from(1u32 << 20);
    header(
        &format!(
            "replicate {} images as {} to {} ({:.0} MiB distinct blob bytes, {:.0} MiB if sent whole)",
            set.images.len(),
            layout.name(),
            kind.name(),
            mib(set.unique_bytes() as f64),
            mib(set.naive_bytes() as f64)
        ),
        "wharf",
        "skopeo sync",
    );
    row("wall time (s)", w.secs, k.map(|k| k.secs));
    let bytes = match kind {
        Kind::Wharf => "blob bytes the target received (MiB)",
        Kind::Distribution => "bytes sent to the target, all TCP (MiB)",
    };
    row(bytes, mib(w.bytes), k.map(|k| mib(k.bytes)));
    row(
        "requests the target served",
        w.requests_total(),
        k.map(Run::requests_total),
    );
    if let Some(c) = w.connections {
        row(
            "connections opened to the target",
            c,
            k.and_then(|k| k.connections),
        );
    }
    row(
        "copier CPU s (source wharf / skopeo)",
        w.copier_cpu,
        k.map(|k| k.copier_cpu),
    );
    row(
        "sending side CPU s (+ source serving skopeo)",
        w.copier_cpu,
        k.map(|k| k.copier_cpu + k.serving_cpu.unwrap_or(0.0)),
    );
    row("target CPU s", w.target_cpu, k.map(|k| k.target_cpu));
    println!("  target requests by method, route and status:");
    let mut keys: Vec<&String> = w.requests.keys().collect();
    if let Some(k) = k {
        keys.extend(k.requests.keys());
    }
    keys.sort();
    keys.dedup();
    for key in keys {
        row(
            &format!("    {key}"),
            w.requests.get(key).copied().unwrap_or(0.0),
            k.map(|k| k.requests.get(key).copied().unwrap_or(0.0)),
        );
    }
    for (who, r) in [("wharf", Some(w)), ("skopeo", k)] {
        let Some(r) = r else { continue };
        if !r.missing.is_empty() {
            println!(
                "!!! {who}: the target lacks {} tags: {:?}",
                r.missing.len(),
                r.missing
            );
        }
        if r.failed > 0 {
            println!("{who}: {} failed attempts (retried)", r.failed);
        }
    }
    if k.is_none() {
        println!("!!! skopeo is not installed: wharf's figures only !!!");
    }

    println!();
    goals_header("issue 11");
    if kind == Kind::Wharf {
        goal(
            "target blob bytes / distinct blob bytes, wharf",
            Some(w.bytes / set.unique_bytes() as f64),
            Goal::AtMost(1.0),
        );
    }
    goal(
        "bytes to the target: wharf / skopeo sync",
        k.map(|k| w.bytes / k.bytes),
        Goal::AtMost(1.0),
    );
    goal(
        "wall time: wharf / skopeo sync",
        k.map(|k| w.secs / k.secs),
        Goal::AtMost(1.0),
    );
    goal(
        "tags missing on the target, wharf",
        Some(w.missing.len() as f64),
        Goal::Exactly(0.0),
    );
}

/// A list knob from the environment: `all` (or unset) gives every value.
fn pick<T: Copy>(var: &str, all: &[(&str, T)]) -> Vec<T> {
    match std::env::var(var) {
        Ok(v) if v != "all" => all
            .iter()
            .filter(|(n, _)| v.split(',').any(|x| x == *n))
            .map(|(_, t)| *t)
            .collect(),
        _ => all.iter().map(|(_, t)| *t).collect(),
    }
}

fn main() {
    let images: usize = env_or("BENCH_IMAGES", 50);
    let base: usize = env_or("BENCH_BASE", 9);
    let layer_kib: usize = env_or("BENCH_LAYER_KIB", 2560);
    let layouts = pick(
        "BENCH_LAYOUTS",
        &[("many", Layout::ManyRepos), ("one", Layout::OneRepo)],
    );
    let kinds = pick(
        "BENCH_TARGETS",
        &[("wharf", Kind::Wharf), ("distribution", Kind::Distribution)],
    );
    let root = tempfile::tempdir().unwrap();
    let htpasswd = root.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    // Bytes of this run only: nothing cached by an earlier run knows them.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let blobs = subdir(root.path(), "blobs");
    for layout in layouts {
        let set = image_set(&blobs, layout, images, base, layer_kib, seed);
        let src_dir = seed_source(root.path(), layout, &set);
        for &kind in &kinds {
            let dir = subdir(root.path(), &format!("{layout:?}-{kind:?}"));
            let Some(w) = wharf_run(kind, &dir, &src_dir, &set, &htpasswd) else {
                println!("\n!!! {} is not installed: skipped !!!", kind.name());
                continue;
            };
            let k = skopeo_run(kind, &dir, &src_dir, &set, &htpasswd);
            report(kind, layout, &set, &w, k.as_ref());
        }
    }
}
