//! The admin commands as the built binary against a real daemon: `ls`, `ls
//! REPO`, `du`, `rm`, `gc`, `verify`, `pin`, `unpin` and `status` in table and
//! `--json` form with real values (checked against the files on disk where
//! they count them), logins that fail, and a daemon that is not running.

mod common;

use common::disk::{blob_path, content_on_disk, files_under};
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, digest, get_json, get_oci, htpasswd, push_image};
use serde_json::{Value, json};

/// What one run of the CLI did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `wharf ARGS` (stdin holds `stdin`; `password` is WHARF_PASSWORD).
async fn wharf(args: &[&str], password: Option<&str>, stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .env_remove("WHARF_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(p) = password {
        cmd.env("WHARF_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("run wharf");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `wharf ARGS --url <w>` that must succeed.
async fn ok(w: &Wharf, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--url", &w.base]);
    let r = wharf(&all, None, "").await;
    assert_eq!(r.code, 0, "wharf {args:?}: {}", r.stderr);
    assert!(
        r.stderr.is_empty(),
        "no progress or noise off a terminal: {}",
        r.stderr
    );
    r
}

/// The line of a table that starts with `first`.
fn line<'a>(out: &'a str, first: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line for {first} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_du_rm_and_status_in_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let layer = tar_with_file("f", &bytes(300_000, 7));
    let (manifest, d) = push_image(&w, "team/app", "1", std::slice::from_ref(&layer)).await;
    assert_eq!(
        common::put_manifest(&w, "team/app", "2", OCI_MANIFEST, &manifest)
            .await
            .status(),
        201
    );
    let img = Image::new(vec![layer]);
    let total: u64 =
        img.blobs().iter().map(|(_, b)| b.len() as u64).sum::<u64>() + manifest.len() as u64;
    // 300,000-byte layer + config + manifest: 293.x KiB.
    let human = format!("{:.1} KiB", total as f64 / 1024.0);

    // ls: the API's JSON as is, and an aligned table.
    let r = ok(&w, &["ls", "--json"]).await;
    assert_eq!(r.json(), get_json(&w, "/_wharf/v1/repos").await);
    assert_eq!(r.json()["repositories"][0]["bytes"], total);
    // As is: the keys keep the API's order.
    let at = |k: &str| r.stdout.find(&format!("\"{k}\": ")).unwrap();
    assert!(
        at("name") < at("origin") && at("origin") < at("bytes"),
        "{}",
        r.stdout
    );
    let r = ok(&w, &["ls"]).await;
    let header = r.stdout.lines().next().unwrap();
    assert!(header.starts_with("REPOSITORY"), "{}", r.stdout);
    let row = line(&r.stdout, "team/app");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..5], ["team/app", "pushed", "-", "2", "1"], "{row}");
    assert!(row.contains(&human), "{human} in {row}");
    // Columns line up: every cell starts where its header does.
    let at = |s: &str, what: &str| s.find(what).unwrap();
    assert_eq!(at(header, "ORIGIN"), at(row, "pushed"), "\n{header}\n{row}");

    // ls REPO: the tags with short digest, size and platforms.
    let r = ok(&w, &["ls", "team/app"]).await;
    assert_eq!(r.stdout.lines().next(), Some("team/app (pushed)"));
    let short = &d[..19];
    for tag in ["1", "2"] {
        let row = line(&r.stdout, tag);
        assert!(row.contains(short), "{short} in {row}");
        assert!(row.contains("linux/amd64"), "{row}");
        assert!(row.contains(&format!("{} B", manifest.len())), "{row}");
    }
    let r = ok(&w, &["ls", "team/app", "--json"]).await;
    assert_eq!(r.json(), get_json(&w, "/_wharf/v1/repos/team/app").await);
    assert_eq!(r.json()["tags"][1]["digest"], d.as_str());

    // du
    let r = ok(&w, &["du"]).await;
    let cells: Vec<&str> = line(&r.stdout, "total").split_whitespace().collect();
    assert_eq!(cells[..2], ["total", "3"], "{}", r.stdout);
    assert!(line(&r.stdout, "pushed").contains(&human), "{}", r.stdout);
    assert!(r.stdout.contains("cache budget: unlimited"), "{}", r.stdout);
    let r = ok(&w, &["du", "--json"]).await;
    assert_eq!(r.json()["pushed_bytes"], total);
    assert_eq!(r.json()["cached_bytes"], 0);

    // rm: a tag, then the manifest; an unknown tag fails with the API's message.
    let r = ok(&w, &["rm", "team/app:1"]).await;
    assert!(
        r.stdout.starts_with("deleted tag team/app:1"),
        "{}",
        r.stdout
    );
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/1").await.status(), 404);
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/2").await.status(), 200);
    let r = wharf(&["rm", "team/app:1", "--url", &w.base], None, "").await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("team/app has no tag 1"), "{}", r.stderr);
    let r = ok(&w, &["rm", &format!("team/app@{d}"), "--json"]).await;
    assert_eq!(
        r.json(),
        json!({"repository": "team/app", "digest": d, "deleted": true})
    );
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/2").await.status(), 404);

    // status
    let r = ok(&w, &["status"]).await;
    let first = r.stdout.lines().next().unwrap();
    // `wharf 0.1.0 (commit …, built …, dev), up 3s`: version and build first.
    assert!(
        first.starts_with(&format!("wharf {} (", env!("CARGO_PKG_VERSION")))
            && first.contains("), up "),
        "{first}"
    );
    let header = r.stdout.lines().nth(1).unwrap();
    assert!(header.starts_with("WORKER"), "{}", r.stdout);
    let row = line(&r.stdout, "uploads");
    assert!(row.contains("idle") && row.contains("in "), "{row}");
    // Every worker, with its next run: gc every hour by default, verify only
    // when asked.
    for name in ["uploads", "access", "evict", "gc", "verify"] {
        line(&r.stdout, name);
    }
    assert!(line(&r.stdout, "gc").contains("in "), "{}", r.stdout);
    assert!(
        line(&r.stdout, "verify").contains("on demand"),
        "{}",
        r.stdout
    );
    let r = ok(&w, &["status", "--json"]).await;
    assert_eq!(r.json()["workers"][0]["name"], "uploads");
    let v = r.json();
    let names: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "uploads", "access", "evict", "gc", "verify", "backup", "import"
        ]
    );
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_that_fail_and_a_daemon_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    htpasswd(&pw, &[("alice", "alice-pw"), ("ci", "ci-pw")]);
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nadmins = [\"alice\"]\n",
        pw.display().to_string()
    );
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("data"), &extra)).await;
    let url = w.base.clone();

    let r = wharf(&["du", "--url", &url], None, "").await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("pass --user"), "{}", r.stderr);
    let r = wharf(&["du", "--url", &url, "--user", "alice"], Some("wrong"), "").await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid username or password"),
        "{}",
        r.stderr
    );
    let r = wharf(&["du", "--url", &url, "--user", "ci"], Some("ci-pw"), "").await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("needs an admin user"), "{}", r.stderr);
    // The password from WHARF_PASSWORD, or from stdin.
    let r = wharf(
        &["du", "--json", "--url", &url, "--user", "alice"],
        Some("alice-pw"),
        "",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["blobs"], 0);
    let r = wharf(
        &[
            "status",
            "--url",
            &url,
            "--user",
            "alice",
            "--password-stdin",
        ],
        Some("wrong"),
        "alice-pw\n",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    w.stop().await;

    // Nothing listens there any more.
    let r = wharf(&["ls", "--url", &url], None, "").await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("is wharf running at {url}?")),
        "{}",
        r.stderr
    );
}

/// A wharf whose gc runs only when asked and sweeps at once.
async fn collecting(dir: &std::path::Path) -> Wharf {
    Wharf::start_with(dir, "[gc]\ninterval = \"0\"\ngrace = \"0s\"\n").await
}

/// Content files under `<root>/blobs/sha256`.
fn blob_files(w: &Wharf) -> usize {
    files_under(&w.root.join("blobs/sha256")).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_after_rm_frees_the_files_and_du_matches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let w = collecting(dir.path()).await;
    push_image(&w, "team/keep", "1", &[bytes(40_000, 1)]).await;
    let layer = bytes(250_000, 2);
    let (manifest, d) = push_image(&w, "team/app", "1", std::slice::from_ref(&layer)).await;
    let img = Image::new(vec![layer]);
    let mut going: Vec<String> = img.blobs().into_iter().map(|(d, _)| d).collect();
    going.push(d.clone());
    let going_bytes: u64 =
        img.blobs().iter().map(|(_, b)| b.len() as u64).sum::<u64>() + manifest.len() as u64;
    let human = format!("{:.1} KiB", going_bytes as f64 / 1024.0);
    assert_eq!(blob_files(&w), 6);
    ok(&w, &["rm", &format!("team/app@{d}")]).await;

    // --dry-run says what would go, and nothing goes.
    let r = ok(&w, &["gc", "--dry-run"]).await;
    assert!(r.stdout.starts_with("DIGEST"), "{}", r.stdout);
    for g in &going {
        assert!(
            line(&r.stdout, g).len() > g.len(),
            "{g} with its size: {}",
            r.stdout
        );
    }
    let last = r.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("gc would remove 3 blobs ({human})")),
        "{last}"
    );
    assert_eq!(blob_files(&w), 6, "a dry run removes nothing");
    let r = ok(&w, &["gc", "--dry-run", "--json"]).await;
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(r.json()["swept_blobs"], 3);
    assert_eq!(r.json()["swept_bytes"], going_bytes);
    assert_eq!(blob_files(&w), 6);

    // The real one: the files are gone, and du counts what is on disk.
    let r = ok(&w, &["gc"]).await;
    let last = r.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("gc removed 3 blobs ({human})")),
        "{last}"
    );
    assert_eq!(blob_files(&w), 3);
    for g in &going {
        assert!(!blob_path(&w.root, g).exists(), "{g}");
    }
    let (files, bytes_on_disk) = content_on_disk(&w.root);
    let r = ok(&w, &["du", "--json"]).await;
    assert_eq!(
        (
            r.json()["blobs"].as_u64().unwrap(),
            r.json()["bytes"].as_u64().unwrap()
        ),
        (files, bytes_on_disk)
    );
    let r = ok(&w, &["du"]).await;
    let cells: Vec<&str> = line(&r.stdout, "total").split_whitespace().collect();
    assert_eq!(cells[1], files.to_string(), "{}", r.stdout);
    let r = ok(&w, &["gc", "--json"]).await;
    assert_eq!(r.json()["dry_run"], false);
    assert_eq!(r.json()["swept_blobs"], 0);
    assert_eq!(r.json()["removed"], json!([]));
    let r = ok(&w, &["gc"]).await;
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "no table when nothing went: {}",
        r.stdout
    );
    assert!(
        r.stdout.starts_with("gc removed 0 blobs (0 B)"),
        "{}",
        r.stdout
    );
    assert_eq!(get_oci(&w, "/v2/team/keep/manifests/1").await.status(), 200);

    // status: the runs, the result, and on demand only.
    let r = ok(&w, &["status"]).await;
    let row = line(&r.stdout, "gc");
    assert!(row.contains("ok") && row.contains("on demand"), "{row}");
    let r = ok(&w, &["status", "--json"]).await;
    let gc = r.json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "gc")
        .cloned()
        .unwrap();
    assert_eq!(gc["runs"], 5, "two dry runs and three real: {gc}");
    assert_eq!(gc["last_result"], "ok", "{gc}");
    w.stop().await;
}

/// Flips a byte in the middle of a content file (same length: only a hash
/// finds it).
fn corrupt(w: &Wharf, d: &str) {
    let p = blob_path(&w.root, d);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&p, b).unwrap();
}

/// `wharf ARGS --url <w>`, whatever it exits with.
async fn run(w: &Wharf, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--url", &w.base]);
    wharf(&all, None, "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_corrupt_blobs_with_what_they_break_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let w = collecting(dir.path()).await;
    let shared = bytes(80_000, 1);
    let (manifest, _) = push_image(&w, "team/app", "1", std::slice::from_ref(&shared)).await;
    assert_eq!(
        common::put_manifest(&w, "team/app", "2", OCI_MANIFEST, &manifest)
            .await
            .status(),
        201
    );
    let other = bytes(9_000, 2);
    push_image(&w, "team/other", "x", std::slice::from_ref(&other)).await;
    let r = ok(&w, &["verify"]).await;
    assert!(r.stdout.starts_with("checked 6 blobs ("), "{}", r.stdout);
    assert!(r.stdout.contains(": 0 corrupt"), "{}", r.stdout);

    // --json: the structured report, and exit 1.
    let bad = digest(&shared);
    corrupt(&w, &bad);
    let r = run(&w, &["verify", "--json"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("1 corrupt blob found and quarantined"),
        "{}",
        r.stderr
    );
    let v = r.json();
    assert_eq!(v["checked_blobs"], 6);
    let c = &v["corrupt"][0];
    assert_eq!(c["digest"], bad.as_str());
    assert_eq!(c["size"], shared.len() as u64);
    assert_eq!(c["origin"], "pushed");
    assert_eq!(c["repositories"], json!(["team/app"]));
    assert_eq!(c["tags"], json!(["team/app:1", "team/app:2"]));
    assert!(c["action"].as_str().unwrap().contains("quarantine"), "{c}");
    let hex = &bad["sha256:".len()..];
    assert!(!blob_path(&w.root, &bad).exists());
    assert!(
        w.root.join("quarantine/sha256").join(hex).exists(),
        "kept for inspection"
    );

    // The human form: each corrupt blob with the tags and repositories it breaks.
    let bad = digest(&other);
    corrupt(&w, &bad);
    let r = run(&w, &["verify"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("1 corrupt blob found"), "{}", r.stderr);
    let out = &r.stdout;
    assert!(
        out.contains(&format!("corrupt {bad} (pushed, 8.8 KiB)")),
        "{out}"
    );
    assert!(out.contains("breaks tags:   team/other:x"), "{out}");
    assert!(out.contains("repositories:  team/other"), "{out}");
    assert!(out.contains("quarantined to "), "{out}");
    assert!(
        out.lines().last().unwrap().ends_with(": 1 corrupt"),
        "{out}"
    );

    // Quarantined: the next pass finds nothing corrupt.
    let r = ok(&w, &["verify"]).await;
    assert!(r.stdout.contains("checked 4 blobs"), "{}", r.stdout);
    assert!(r.stdout.contains(": 0 corrupt"), "{}", r.stdout);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_list_and_unpin_in_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let w = collecting(dir.path()).await;
    let (_, d) = push_image(&w, "team/app", "1", &[bytes(3_000, 1)]).await;
    let r = ok(&w, &["pin"]).await;
    assert!(r.stdout.starts_with("no pins"), "{}", r.stdout);
    let r = ok(&w, &["pin", "--json"]).await;
    assert_eq!(r.json(), json!({"pins": []}));

    let r = ok(&w, &["pin", "team/app:1"]).await;
    assert_eq!(r.stdout, format!("pinned team/app:1 ({d})\n"));
    let by_digest = format!("team/app@{d}");
    let r = ok(&w, &["pin", &by_digest, "--json"]).await;
    assert_eq!(r.json(), json!({"reference": by_digest, "digest": d}));
    let r = ok(&w, &["pin"]).await;
    assert!(r.stdout.starts_with("REFERENCE"), "{}", r.stdout);
    for reference in ["team/app:1", by_digest.as_str()] {
        let row = line(&r.stdout, reference);
        assert!(row.contains(&d) && row.ends_with("just now"), "{row}");
    }
    let r = ok(&w, &["pin", "--json"]).await;
    let v = r.json();
    let refs: Vec<&str> = v["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["team/app:1", by_digest.as_str()]);
    let r = ok(&w, &["ls"]).await;
    assert!(line(&r.stdout, "team/app").ends_with("yes"), "{}", r.stdout);

    // A pinned image cannot be deleted: the API's message, exit 1.
    let r = run(&w, &["rm", "team/app:1"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is pinned"), "{}", r.stderr);
    // Unpinned (by the reference as pinned), deleted and collected: nothing
    // of it stays behind.
    let r = ok(&w, &["unpin", "team/app:1"]).await;
    assert_eq!(r.stdout, format!("unpinned team/app:1 ({d})\n"));
    let r = run(&w, &["unpin", "team/app:1"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("team/app:1 is not pinned"),
        "{}",
        r.stderr
    );
    let r = ok(&w, &["unpin", &by_digest, "--json"]).await;
    assert_eq!(r.json(), json!({"reference": by_digest, "digest": d}));
    ok(&w, &["rm", &by_digest]).await;
    let r = ok(&w, &["gc", "--json"]).await;
    assert_eq!(r.json()["swept_blobs"], 3, "{}", r.stdout);
    assert_eq!(blob_files(&w), 0);
    let r = ok(&w, &["pin"]).await;
    assert!(r.stdout.starts_with("no pins"), "{}", r.stdout);

    // Errors: the API's message, exit 1.
    let r = run(&w, &["pin", "team/app:1"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("team/app has no tag 1"), "{}", r.stderr);
    let r = run(&w, &["pin", "team/app"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no tag or digest"), "{}", r.stderr);
    w.stop().await;
}
