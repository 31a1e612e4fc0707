//! The admin commands as the built binary against a real daemon: `ls`, `ls
//! REPO`, `du`, `rm` and `status` in table and `--json` form with real values,
//! logins that fail, and a daemon that is not running.

mod common;

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, get_json, get_oci, htpasswd, push_image};
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
    assert!(
        first.starts_with(&format!("wharf {}, up ", env!("CARGO_PKG_VERSION"))),
        "{first}"
    );
    let header = r.stdout.lines().nth(1).unwrap();
    assert!(header.starts_with("WORKER"), "{}", r.stdout);
    let row = line(&r.stdout, "uploads");
    assert!(row.contains("idle") && row.contains("in "), "{row}");
    let r = ok(&w, &["status", "--json"]).await;
    assert_eq!(r.json()["workers"][0]["name"], "uploads");
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
