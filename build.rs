//! Build facts for `wharf --version` and `GET /_wharf/v1/status`: the git commit
//! (when built from a git checkout of wharf itself), the build date and the
//! cargo profile. Never fails: without git, or from a tarball, the commit is
//! simply unknown. `WHARF_GIT_COMMIT` overrides the commit (a distribution
//! building from a tarball knows it), and `SOURCE_DATE_EPOCH` fixes the date
//! (reproducible builds).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=WHARF_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");

    let commit = match std::env::var("WHARF_GIT_COMMIT").map(|c| clean_commit(&c)) {
        Ok(c) if !c.is_empty() => c,
        _ => git_commit(&manifest_dir).unwrap_or_default(),
    };
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let (date, profile) = (date(epoch), profile());
    let summary = if commit.is_empty() {
        format!("built {date}, {profile}")
    } else {
        format!("commit {commit}, built {date}, {profile}")
    };
    println!("cargo:rustc-env=WHARF_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=WHARF_BUILD_DATE={date}");
    println!("cargo:rustc-env=WHARF_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=WHARF_BUILD_SUMMARY={summary}");
}

/// A commit name as it may appear in `cargo:rustc-env` (one line: a newline
/// would end the directive and start another), a log line and `--version`:
/// its first line, only `[0-9A-Za-z._+-]`, at most 64 characters. Anything else a packager's
/// `WHARF_GIT_COMMIT` holds is dropped.
fn clean_commit(raw: &str) -> String {
    raw.trim()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        .take(64)
        .collect()
}

/// `git` in `dir`, its trimmed stdout when it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The short commit of HEAD, with `-dirty` when tracked files differ from it;
/// None unless `dir` is the top of a git work tree (a tarball unpacked inside
/// some other repository must not take that repository's commit).
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself (a branch switch), the branch's ref
    // (a commit), packed refs, and the index (staging); and when the sources
    // change, which is what `-dirty` reads.
    for tracked in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={tracked}");
    }
    for name in ["HEAD", "index", "packed-refs"] {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", name]) {
            println!("cargo:rerun-if-changed={}", dir.join(p).display());
        }
    }
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={}", dir.join(p).display());
        }
    }
    let hash = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// The cargo profile's name (`release`, `dev`, or a custom one such as
/// `release-deb`), read from OUT_DIR (`<target>/<profile dir>/build/...`):
/// PROFILE only says `debug` or `release`.
fn profile() -> String {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dir = out
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    match dir.as_deref() {
        Some("debug") => "dev".into(),
        Some(d) => d.into(),
        None => std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into()),
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's civil-from-days).
fn date(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
