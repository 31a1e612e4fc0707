//! Authentication as operators run it: `wharf user add` picked up live, SIGHUP
//! reloading rules, secrets kept out of the logs, bad htpasswd files refused,
//! and htpasswd files made by Apache's `htpasswd -B` taken as they are.

mod common;

use common::{Wharf, WharfProcess, have_tool, htpasswd};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn status(w: &WharfProcess, user: &str, pw: &str, path: &str) -> u16 {
    client()
        .get(w.url(path))
        .basic_auth(user, Some(pw))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn auth_section(pw: &std::path::Path, rules: &str) -> String {
    format!(
        "[auth]\nhtpasswd = {:?}\nanonymous_pull = false\n{rules}",
        pw.display().to_string()
    )
}

#[test]
fn user_add_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = WharfProcess::spawn(dir.path(), &dir.path().join("data"), &auth_section(&pw, ""));
    assert_eq!(status(&w, "carol", "carol-pw", "/v2/"), 401);
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--cost",
            "4",
            "--htpasswd",
        ])
        .arg(&pw)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"carol-pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    let line = std::fs::read_to_string(&pw).unwrap();
    assert!(line.contains("carol:$2y$04$"), "{line}");
    w.wait_log("htpasswd file changed; users reloaded");
    assert_eq!(status(&w, "carol", "carol-pw", "/v2/"), 200);
    assert_eq!(status(&w, "alice", "alice-pw", "/v2/"), 200);
}

#[test]
fn sighup_reloads_rules_and_keeps_them_when_the_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    htpasswd(&pw, &[("ci", "ci-pw")]);
    let open = "[[auth.rule]]\nusers = [\"ci\"]\nrepos = [\"*\"]\nactions = [\"pull\", \"push\"]\n";
    let w = WharfProcess::spawn(
        dir.path(),
        &dir.path().join("data"),
        &auth_section(&pw, open),
    );
    assert_eq!(
        status(&w, "ci", "ci-pw", "/v2/x/tags/list"),
        404,
        "allowed: the repo just does not exist"
    );
    // Tighten the rules in the same file and SIGHUP.
    let cfg_path = dir.path().join("wharf.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("repos = [\"*\"]", "repos = [\"team/*\"]");
    std::fs::write(&cfg_path, &cfg).unwrap();
    w.signal("-HUP");
    w.wait_log("reloaded authentication settings");
    assert_eq!(status(&w, "ci", "ci-pw", "/v2/x/tags/list"), 403);
    assert_eq!(status(&w, "ci", "ci-pw", "/v2/team/x/tags/list"), 404);
    // A broken config is refused and the running rules stay.
    std::fs::write(&cfg_path, format!("{cfg}\nnonsense = 1\n")).unwrap();
    w.signal("-HUP");
    w.wait_log("reload refused");
    assert_eq!(status(&w, "ci", "ci-pw", "/v2/team/x/tags/list"), 404);
}

#[test]
fn logs_never_contain_passwords_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    htpasswd(&pw, &[("ci", "sup3r-secret-pw")]);
    let extra = auth_section(&pw, "").replace("[auth]\n", "[auth]\nscheme = \"token\"\n");
    let mut w = WharfProcess::spawn(dir.path(), &dir.path().join("data"), &extra);
    let c = client();
    let r = c
        .get(w.url("/token?service=wharf&scope=repository:a/b:pull,push"))
        .basic_auth("ci", Some("sup3r-secret-pw"))
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(
        c.get(w.url("/v2/a/b/tags/list"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        404
    );
    let r = c
        .get(w.url("/token?service=wharf"))
        .basic_auth("ci", Some("wrong-secret-guess"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    w.signal("-TERM");
    assert!(w.child.wait().unwrap().success());
    let lines: Vec<String> = w.log.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("route=\"token\"")),
        "requests were logged"
    );
    assert!(
        lines.iter().any(|l| l.contains("user=\"ci\"")),
        "the user is logged"
    );
    for l in &lines {
        assert!(
            !l.contains("sup3r-secret-pw") && !l.contains("wrong-secret-guess"),
            "password in log: {l}"
        );
        assert!(!l.contains(&token), "token in log: {l}");
        assert!(
            !l.contains(token.split('.').next().unwrap()),
            "token payload in log: {l}"
        );
    }
}

#[test]
fn non_bcrypt_htpasswd_is_refused_at_start_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    std::fs::write(&pw, "# users\nmallory:$apr1$salt$hash\n").unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n",
            auth_section(&pw, ""),
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("mallory") && err.contains("bcrypt"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_htpasswd_files_work_as_they_are() {
    if !have_tool("htpasswd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "apache", "apache-pw"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&pw, &out.stdout).unwrap();
    // And a line written by `wharf user add`, verified by Apache's own tool.
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "user",
            "add",
            "wharfuser",
            "--password-stdin",
            "--cost",
            "5",
            "--htpasswd",
        ])
        .arg(&pw)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"wharf-pw").unwrap();
    assert!(add.wait().unwrap().success());
    let v = std::process::Command::new("htpasswd")
        .args(["-vb"])
        .arg(&pw)
        .args(["wharfuser", "wharf-pw"])
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "apache rejects wharf's line: {}",
        String::from_utf8_lossy(&v.stderr)
    );

    let w = Wharf::start_config_unchecked(common::config(
        &dir.path().join("data"),
        &auth_section(&pw, ""),
    ))
    .await;
    for (u, p) in [("apache", "apache-pw"), ("wharfuser", "wharf-pw")] {
        let r = common::http()
            .get(w.url("/v2/"))
            .basic_auth(u, Some(p))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{u}");
    }
    let r = common::http()
        .get(w.url("/v2/"))
        .basic_auth("apache", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    w.stop().await;
}
