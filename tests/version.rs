//! Which build answers: `wharf --version` (version, git commit, build date,
//! profile), and the same facts plus the uptime in `GET /_wharf/v1/status` and
//! `wharf status`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Wharf, get_json};

/// The commit build.rs must have recorded: HEAD of the work tree this crate is
/// the top of, or nothing (a tarball, no git).
fn expected_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let same = std::fs::canonicalize(&top).ok()? == std::fs::canonicalize(dir).ok()?;
    if !same {
        return None;
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn wharf(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .output()
        .expect("run wharf");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_commit_the_build_date_and_the_profile() {
    let (code, out, err) = wharf(&["--version"]);
    assert_eq!(code, 0, "{err}");
    let line = out.trim();
    let version = env!("CARGO_PKG_VERSION");
    assert!(line.starts_with(&format!("wharf {version} (")), "{line}");
    match expected_commit() {
        // A work tree with edits says so after the hash.
        Some(c) => assert!(line.contains(&format!("commit {c}")), "{line}"),
        None => assert!(!line.contains("commit"), "{line}"),
    }
    let built = line
        .split("built ")
        .nth(1)
        .unwrap_or_else(|| panic!("no build date: {line}"));
    assert!(is_date(&built[..10]), "{line}");
    // Tests build with the dev profile.
    assert!(line.ends_with(", dev)"), "{line}");

    // -V stays the short form scripts parse.
    let (code, out, _) = wharf(&["-V"]);
    assert_eq!((code, out.trim()), (0, format!("wharf {version}").as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_version_build_and_a_growing_uptime() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;

    let v = get_json(&w, "/_wharf/v1/status").await;
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let build = &v["build"];
    match expected_commit() {
        Some(c) => assert!(
            build["commit"].as_str().is_some_and(|b| b.starts_with(&c)),
            "{v}"
        ),
        None => assert!(build["commit"].is_null(), "{v}"),
    }
    assert!(build["date"].as_str().is_some_and(is_date), "{v}");
    assert_eq!(build["profile"], "dev");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = v["started_at"].as_u64().expect("started_at");
    assert!(started <= now && now - started < 120, "{v}");
    let first = v["uptime_seconds"].as_u64().expect("uptime_seconds");

    // Uptime counts: poll until it has moved (it ticks in whole seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_json(&w, "/_wharf/v1/status").await;
        if v["uptime_seconds"].as_u64().unwrap() > first {
            break;
        }
        assert!(Instant::now() < deadline, "uptime stuck at {first}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `wharf status` says the same in its first line, and all of it with --json.
    let base = w.base.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || wharf(&["status", "--url", &base]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let head = out.lines().next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("wharf {} (", env!("CARGO_PKG_VERSION"))),
        "{head}"
    );
    assert!(head.contains(&format!("built {}", build["date"].as_str().unwrap())));
    assert!(
        head.contains(", dev), up ") && head.ends_with('s'),
        "{head}"
    );
    if let Some(c) = build["commit"].as_str() {
        assert!(head.contains(&format!("commit {c}")), "{head}");
    }
    let base = w.base.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || wharf(&["status", "--json", "--url", &base]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["build"], v["build"]);
    assert!(j["uptime_seconds"].as_u64().unwrap() > first);

    w.stop().await;
}
