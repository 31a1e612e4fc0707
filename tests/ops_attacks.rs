//! Issue 13 under attack: a careless operator's environment and signals
//! (a SIGHUP storm during start-up, a nonsense `WATCHDOG_USEC`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::WharfProcess;

/// A hosted-only config on `addr` in `dir`.
fn hosted_config(dir: &std::path::Path, addr: std::net::SocketAddr) -> std::path::PathBuf {
    let cfg = dir.join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{addr}\"\n[storage]\nroot = {:?}\n[hosted]\nonly = true\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// Waits (60s at most) for the child to exit; its exit status.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "wharf did not exit");
        std::thread::yield_now();
    }
}

fn kill(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// SIGHUP as soon as wharf listens, while it still opens its store (a
/// restart of a big store racing logrotate or `systemctl reload`, a storm):
/// wharf must survive start-up, serve, and still exit 0 on SIGTERM. SIGHUP's
/// default action ends a process, so a handler installed only once the index
/// is open leaves a window in which a reload kills the daemon.
#[test]
fn a_sighup_storm_during_start_up_does_not_kill_wharf() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = hosted_config(dir.path(), addr);
    // Leftovers in tmp/ that start-up clears: opening the store takes a while.
    let tmp = dir.path().join("data/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for i in 0..20_000 {
        std::fs::write(tmp.join(format!("left-{i}")), b"x").unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "wharf exited early");
        assert!(Instant::now() < deadline, "wharf never listened");
        std::thread::yield_now();
    }
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() || !kill(pid, "-HUP") {
            break;
        }
    }
    let status = child.try_wait().unwrap();
    assert!(
        status.is_none(),
        "wharf died from a SIGHUP during start-up: {status:?}"
    );
    let client = reqwest::blocking::Client::new();
    let ready = loop {
        let r = client.get(format!("http://{addr}/readyz")).send();
        if r.as_ref().is_ok_and(|r| r.status() == 200) || Instant::now() > deadline {
            break r.map(|r| r.status().as_u16());
        }
        std::thread::yield_now();
    };
    assert_eq!(ready.ok(), Some(200));
    assert!(kill(pid, "-TERM"));
    let status = wait_exit(&mut child);
    assert!(status.success(), "SIGTERM after the storm: {status:?}");
}

/// `WATCHDOG_USEC=1` (a typo for seconds, a broken supervisor): wharf starts,
/// serves, and does not spin logging a failed liveness check every
/// millisecond.
#[test]
fn a_one_microsecond_watchdog_neither_spins_nor_floods_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let notify = sock_path.display().to_string();
    let mut w = WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        "",
        "",
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1")],
    );
    let client = reqwest::blocking::Client::new();
    for _ in 0..50 {
        let r = client.get(w.url("/readyz")).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    w.signal("-TERM");
    let status = wait_exit(&mut w.child);
    assert!(status.success(), "{status:?}");
    let lines: Vec<String> = w.log.try_iter().collect();
    let noisy = lines
        .iter()
        .filter(|l| l.contains("liveness") || l.contains("cannot notify"))
        .count();
    assert!(
        noisy <= 2,
        "{noisy} watchdog log lines while serving 50 requests: {:?}",
        &lines[..lines.len().min(5)]
    );
    let mut pings = 0;
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        pings += usize::from(String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"));
    }
    assert!(pings <= 2, "{pings} watchdog pings");
}

const ALERTS: &str = include_str!("../config/prometheus-alerts.yml");
const README: &str = include_str!("../README.md");

/// Each alert rule of the example set: name, severity and expression (the
/// expression's lines joined).
fn alert_rules() -> Vec<(String, String, String)> {
    let mut rules: Vec<(String, String, String)> = Vec::new();
    let mut in_expr = false;
    for line in ALERTS.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            rules.push((name.trim().to_owned(), String::new(), String::new()));
            in_expr = false;
        } else if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            in_expr = e == "|";
            if let Some(r) = rules.last_mut()
                && !in_expr
            {
                r.2 = e.to_owned();
            }
        } else if in_expr && line.starts_with("          ") && !t.starts_with('#') {
            if let Some(r) = rules.last_mut() {
                r.2.push(' ');
                r.2.push_str(t);
            }
        } else {
            in_expr = false;
            if let Some(sev) = t.strip_prefix("severity:")
                && let Some(r) = rules.last_mut()
            {
                r.1 = sev.trim().to_owned();
            }
        }
    }
    rules
}

/// The `result` matcher values of an expression side.
fn result_matchers(side: &str) -> Vec<&str> {
    side.split("result=")
        .skip(1)
        .filter_map(|s| s.trim_start_matches('~').split('"').nth(1))
        .collect()
}

/// `a{result="failed"} and b{result="done"}` never matches anything: `and`
/// keeps left series whose label set the right side has, and the `result`
/// values differ. An operator would wait for an alert that cannot fire.
#[test]
fn no_alert_joins_different_results_with_and() {
    let rules = alert_rules();
    assert!(rules.len() >= 10, "{rules:?}");
    for (name, _, expr) in &rules {
        for pair in expr.split(" and ").collect::<Vec<_>>().windows(2) {
            let (l, r) = (result_matchers(pair[0]), result_matchers(pair[1]));
            let aggregated = pair[1].trim_start().starts_with("sum by")
                && pair[0].trim_start().starts_with("sum by");
            assert!(
                l.is_empty() || r.is_empty() || l == r || aggregated,
                "{name}: `and` between result {l:?} and result {r:?} never matches: {expr}"
            );
        }
    }
}

/// README's alert table says the same severity as the rules file.
#[test]
fn readme_alert_severities_match_the_rules() {
    for (name, severity, _) in alert_rules() {
        let row = README
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("{name} not in README's alert table"));
        assert!(
            row.trim_end().ends_with(&format!("| {severity} |")),
            "{name}: rules say {severity}, README says {row}"
        );
    }
}

/// A newcomer runs an example config (`[auth] htpasswd = "/etc/wharf/htpasswd"`)
/// before creating the file: the error names the command that creates it.
#[test]
fn a_missing_htpasswd_file_names_the_command_that_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let cfg = dir.path().join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[hosted]\nonly = true\n[auth]\nhtpasswd = {:?}\n",
            dir.path().join("data").display().to_string(),
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("wharf user add NAME --htpasswd {}", htpasswd.display());
    assert!(err.contains(&want), "{err}");
}

/// `NOTIFY_SOCKET=@name` (an abstract socket, which `sd_notify(3)` allows):
/// READY=1 reaches it, or a `Type=notify` unit would time out starting.
#[test]
fn ready_reaches_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("wharf-ops-attacks-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let env = format!("@{name}");
    let w = WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        "",
        "",
        &[("NOTIFY_SOCKET", &env)],
    );
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no READY=1");
        let n = sock.recv(&mut buf).expect("a notification within 30s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    drop(w);
}
