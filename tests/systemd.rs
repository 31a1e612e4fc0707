//! wharf as a systemd service: the unit's sandbox score and `verify`, the
//! sysusers file, the `sd_notify` protocol (READY=1 only once it serves,
//! watchdog pings, STOPPING=1, RELOADING=1/READY=1) over a real notify socket,
//! and signals under load (SIGTERM during a large pull, SIGHUP while 64
//! clients pull).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{WharfProcess, bytes, digest, have_tool, htpasswd};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/wharf.service");
const SYSUSERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/wharf.sysusers");

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager { sock, path }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.display().to_string())
    }

    /// The next datagram within `within`, if any.
    fn next(&self, within: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits (30s at most) for a datagram holding the line `line`.
    fn wait_for(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {line:?} from wharf");
            if let Some(msg) = self.next(left)
                && msg.lines().any(|l| l == line)
            {
                return msg;
            }
        }
    }
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(key))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Waits for the child to exit (60s at most) and says whether it exited 0.
fn exits_zero(w: &mut WharfProcess) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            return status.success();
        }
        assert!(Instant::now() < deadline, "wharf did not exit");
        std::thread::yield_now();
    }
}

#[test]
fn ready_only_once_serving_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::bind(dir.path());
    let (k, v) = m.env();
    let mut w = WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        "",
        "",
        &[(k, &v), ("WATCHDOG_USEC", "1000000")],
    );
    let ready = m.wait_for("READY=1");
    // The status line names the bound address; a request right away is served.
    let status = field(&ready, "STATUS=").expect("a status line with READY=1");
    let addr = status.rsplit(' ').next().unwrap();
    assert_eq!(format!("http://{addr}"), w.base, "{status}");
    TcpStream::connect(addr).expect("the listener accepts once READY=1 is sent");
    let r = client().get(w.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200, "the index is open once READY=1 is sent");

    // WATCHDOG_USEC=1s: a ping every half second while alive.
    for _ in 0..3 {
        m.wait_for("WATCHDOG=1");
    }
    w.signal("-TERM");
    let stopping = m.wait_for("STOPPING=1");
    assert!(field(&stopping, "STATUS=").is_some(), "{stopping}");
    assert!(exits_zero(&mut w));
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_names_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::bind(dir.path());
    let (k, v) = m.env();
    let mut w = WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        "",
        "",
        &[(k, &v), ("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
    );
    m.wait_for("READY=1");
    // Ten ping periods of silence (a ping would be due every 100ms).
    let until = Instant::now() + Duration::from_secs(2);
    while let Some(msg) = m.next(until.saturating_duration_since(Instant::now())) {
        assert!(!msg.contains("WATCHDOG=1"), "pinged for another pid: {msg}");
    }
    w.signal("-TERM");
    m.wait_for("STOPPING=1");
    assert!(exits_zero(&mut w));
}

#[tokio::test]
async fn the_liveness_check_needs_a_recent_heartbeat_and_a_working_index() {
    use wharf::systemd::watchdog::{Heartbeat, Stuck, check};
    let dir = tempfile::tempdir().unwrap();
    let store = wharf::store::Store::open(dir.path()).await.unwrap();
    let beat = Heartbeat::new(Duration::from_millis(10));
    beat.beat();
    check(&store, &beat, Duration::from_secs(30)).await.unwrap();
    // No beat for longer than the limit: the accept loop counts as stuck.
    let deadline = Instant::now() + Duration::from_secs(10);
    while beat.age() <= Duration::from_millis(20) {
        assert!(Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    match check(&store, &beat, Duration::from_millis(20)).await {
        Err(Stuck::AcceptLoop(age)) => assert!(age > Duration::from_millis(20)),
        other => panic!("expected a stuck accept loop, got {other:?}"),
    }
    store.close();
}

/// `Key=value` lines of the unit (the last one of each key wins, as in systemd).
fn unit_settings() -> Vec<(String, String)> {
    std::fs::read_to_string(UNIT)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting(key: &str) -> Option<String> {
    unit_settings()
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn the_unit_is_a_notify_service_with_a_watchdog_and_the_packaged_paths() {
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("StateDirectory", "wharf"),
        ("User", "wharf"),
        (
            "ExecStart",
            "/usr/bin/wharf serve --config /etc/wharf/wharf.toml",
        ),
    ] {
        assert_eq!(setting(key).as_deref(), Some(want), "{key}=");
    }
    assert_eq!(
        setting("DynamicUser"),
        None,
        "the sysusers user, not a dynamic one"
    );
    // The packaged config stores where the unit lets wharf write.
    let cfg = wharf::config::Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/wharf.toml"
    )))
    .unwrap();
    assert_eq!(cfg.storage.root, Path::new("/var/lib/wharf"));
    // Stopping waits for the drain.
    let stop: u64 = setting("TimeoutStopSec").unwrap().parse().unwrap();
    assert!(
        stop > cfg.server.drain_timeout.0.as_secs(),
        "TimeoutStopSec"
    );
}

#[test]
fn the_unit_scores_2_or_lower_in_systemd_analyze_security() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", UNIT])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !have_tool("systemd-analyze") {
        return;
    }
    // verify wants ExecStart's binary to exist: a copy of the unit runs the
    // binary cargo built instead of the packaged /usr/bin/wharf.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("/usr/bin/wharf "));
    let copy = dir.path().join("wharf.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/bin/wharf ",
            &format!("{} ", env!("CARGO_BIN_EXE_wharf")),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.lines().any(|l| l.contains("wharf.service")),
        "warnings:\n{err}"
    );
}

#[test]
fn the_sysusers_file_creates_a_locked_wharf_user_owning_the_state_directory() {
    if !have_tool("systemd-sysusers") {
        return;
    }
    // Into a scratch root, never the machine's own /etc.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let mut run = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    run.stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(SYSUSERS).unwrap())
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("wharf:"))
        .unwrap_or_else(|| panic!("no wharf user in {passwd}"));
    let f: Vec<&str> = user.split(':').collect();
    assert_eq!(f[5], "/var/lib/wharf", "{user}");
    assert!(f[6].ends_with("nologin"), "{user}");
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system user: {user}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("wharf:")), "{group}");
}

/// Monolithic push with optional Basic credentials; returns the digest.
fn push(w: &WharfProcess, repo: &str, data: Vec<u8>, creds: Option<(&str, &str)>) -> String {
    let d = digest(&data);
    let c = client();
    let auth = |r: reqwest::blocking::RequestBuilder| match creds {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let r = auth(c.post(w.url(&format!("/v2/{repo}/blobs/uploads/"))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = auth(c.put(w.url(&format!("{loc}{sep}digest={d}"))))
        .body(data)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

#[test]
fn sigterm_during_a_large_pull_lets_it_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::bind(dir.path());
    let (k, v) = m.env();
    let mut w =
        WharfProcess::spawn_env(dir.path(), &dir.path().join("data"), "", "", "", &[(k, &v)]);
    const SIZE: usize = 256 << 20;
    let d = push(&w, "big/image", bytes(SIZE, 77), None);

    let host = w.base.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&host).unwrap();
    write!(s, "GET /v2/big/image/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut len = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if line.starts_with("HTTP/") {
            assert!(line.contains(" 200 "), "{line}");
        }
    }
    assert_eq!(len, Some(SIZE));
    // Compared with the pushed bytes as they arrive (hashing 256 MiB in a
    // debug build would take longer than the drain allows).
    let expected = bytes(SIZE, 77);
    assert_eq!(digest(&expected), d);
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    // A slow but steady reader: a bounded pace per MiB keeps the transfer
    // running across the signal and the drain.
    let mut read_mib = |r: &mut BufReader<TcpStream>, got: &mut usize| {
        let want = buf.len().min(SIZE - *got);
        if let Err(e) = r.read_exact(&mut buf[..want]) {
            panic!("the pull was cut after {} of {SIZE} bytes: {e}", *got);
        }
        assert!(
            buf[..want] == expected[*got..*got + want],
            "wrong bytes at {}",
            *got
        );
        *got += want;
        std::thread::sleep(Duration::from_millis(4));
    };
    while got < 16 << 20 {
        read_mib(&mut r, &mut got);
    }
    let signalled = Instant::now();
    w.signal("-TERM");
    m.wait_for("STOPPING=1");
    w.wait_log("no longer accepting connections");
    assert!(
        TcpStream::connect(&host).is_err(),
        "no new connections while draining"
    );
    while got < SIZE {
        read_mib(&mut r, &mut got);
    }
    eprintln!(
        "read all {SIZE} bytes {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(exits_zero(&mut w), "exit status 0 after the drain");
}

/// Wharf's `[auth]` section: `htpasswd` as the only user file, logins required.
fn auth_config(pw: &Path) -> String {
    format!(
        "[auth]\nhtpasswd = {:?}\nanonymous_pull = false\n",
        pw.display().to_string()
    )
}

#[test]
fn sighup_while_64_clients_pull_fails_no_request_and_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.htpasswd");
    let second = dir.path().join("second.htpasswd");
    htpasswd(&first, &[("ci", "ci-pw")]);
    htpasswd(&second, &[("ci", "ci-pw"), ("late", "late-pw")]);
    let m = Manager::bind(dir.path());
    let (k, v) = m.env();
    let w = WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        "",
        &auth_config(&first),
        &[(k, &v)],
    );
    m.wait_for("READY=1");
    let ci = Some(("ci", "ci-pw"));
    let layer = bytes(256 << 10, 9);
    let img = common::image::Image::new(vec![layer.clone()]);
    push(&w, "load/app", img.config.clone(), ci);
    let blob = push(&w, "load/app", layer, ci);
    let r = client()
        .put(w.url("/v2/load/app/manifests/v1"))
        .basic_auth("ci", Some("ci-pw"))
        .header("content-type", common::image::OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let manifest = digest(&img.manifest);
    let login = |u: &str, p: &str| {
        client()
            .get(w.url("/v2/"))
            .basic_auth(u, Some(p))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(login("late", "late-pw"), 401, "not a user yet");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let shared = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let clients: Vec<_> = (0..64)
        .map(|i| {
            // Half reuse kept-alive connections, half open one per request.
            let c = if i % 2 == 0 { shared.clone() } else { client() };
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            let (man_url, blob_url) = (
                w.url("/v2/load/app/manifests/v1"),
                w.url(&format!("/v2/load/app/blobs/{blob}")),
            );
            let (manifest, blob) = (manifest.clone(), blob.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (url, want) in [(&man_url, &manifest), (&blob_url, &blob)] {
                        let got = c
                            .get(url.as_str())
                            .basic_auth("ci", Some("ci-pw"))
                            .header("accept", common::image::OCI_MANIFEST)
                            .send()
                            .and_then(|r| {
                                let status = r.status();
                                r.bytes().map(|b| (status, digest(&b)))
                            });
                        match got {
                            Ok((s, d)) if s == 200 && &d == want => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().unwrap().push(format!("{url}: {other:?}")),
                        }
                    }
                }
            })
        })
        .collect();
    let wait_done = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the clients stalled");
            std::thread::yield_now();
        }
    };
    wait_done(256);

    // Reload three times under load; the last one switches the user file.
    let cfg_path = dir.path().join("wharf.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    for round in 0..3 {
        if round == 2 {
            let from = format!("{:?}", first.display().to_string());
            let to = format!("{:?}", second.display().to_string());
            std::fs::write(&cfg_path, cfg.replace(&from, &to)).unwrap();
        }
        let before = done.load(Ordering::Relaxed);
        w.signal("-HUP");
        m.wait_for("RELOADING=1");
        m.wait_for("READY=1");
        wait_done(before + 128);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests of {}, first: {:?}",
        failures.len(),
        done.load(Ordering::Relaxed),
        failures.first()
    );
    assert_eq!(login("late", "late-pw"), 200, "the reload took effect");
    assert_eq!(login("ci", "ci-pw"), 200);
}
