//! `wharf config from-registry FILE`: a production-like registry:2 `config.yml`
//! becomes a wharf.toml that `wharf check-config` accepts and that serves the
//! same htpasswd users over the same TLS files; `REGISTRY_*` overrides apply;
//! a missing or garbage file is a clear error with exit code 1.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::certs::pki;
use common::{digest, image};

/// Runs `wharf config from-registry FILE` with `env`; (code, stdout, stderr).
fn convert(file: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["config", "from-registry"]).arg(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wharf check-config --config FILE`: (code, stderr).
fn check_config(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["check-config", "--config"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A production-like config.yml, as the registry:2 docs and deployments write it.
fn production_yml(certs: &Path, htpasswd: &Path, proxy: &str) -> String {
    format!(
        r#"version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
http:
  addr: :5000
  secret: a-very-secret-http-secret
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: {cert}
    key: {key}
auth:
  htpasswd:
    realm: basic-realm
    path: {htpasswd}
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
notifications:
  endpoints:
    - name: alistener
      url: https://listener.example.com/event
      headers:
        Authorization: [Bearer a-notification-secret]
      timeout: 500ms
      threshold: 5
      backoff: 1s
redis:
  addr: localhost:6379
  password: a-redis-secret
  db: 0
{proxy}"#,
        cert = certs.join("tls.crt").display(),
        key = certs.join("tls.key").display(),
        htpasswd = htpasswd.display(),
    )
}

const PROXY: &str = "proxy:\n  remoteurl: https://registry-1.docker.io\n  username: hubuser\n  password: a-hub-secret\n";

/// A running `wharf serve`, killed and reaped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary serving `config`; returns it and its `https://addr`.
fn serve(config: &Path) -> (Daemon, String) {
    let mut child = Daemon(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(config)
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("wharf announced its address");
        if line.contains("wharf serving") {
            let a = line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            assert!(line.contains("https"), "TLS from http.tls: {line}");
            return (child, format!("https://{a}"));
        }
    }
}

/// The generated text with wharf's data directory moved into the test's.
fn with_root(toml: &str, root: &Path) -> String {
    let line = "root = \"/var/lib/wharf\"";
    assert!(toml.contains(line), "{toml}");
    toml.replace(line, &format!("root = {:?}", root.display().to_string()))
}

#[tokio::test]
async fn production_config_is_accepted_and_serves_the_same_htpasswd_users() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("cfgreg-ca");
    pki.write(dir.path());
    let htpasswd = dir.path().join("htpasswd");
    common::htpasswd(&htpasswd, &[("alice", "wonderland"), ("bob", "builder")]);
    let yml = dir.path().join("config.yml");
    std::fs::write(&yml, production_yml(dir.path(), &htpasswd, "")).unwrap();

    // As written: :5000 on all interfaces, accepted by check-config.
    let (code, toml, err) = convert(&yml, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(toml.contains("listen = \"0.0.0.0:5000\""), "{toml}");
    assert!(toml.contains("wharf import /var/lib/registry"), "{toml}");
    for secret in [
        "a-very-secret-http-secret",
        "a-redis-secret",
        "a-notification-secret",
    ] {
        assert!(!toml.contains(secret), "{secret} printed:\n{toml}");
    }
    for key in [
        "http.headers",
        "health",
        "notifications",
        "redis",
        "http.secret",
    ] {
        assert!(
            toml.contains(&format!("# - {key}")),
            "{key} not listed:\n{toml}"
        );
    }
    let out = dir.path().join("wharf.toml");
    std::fs::write(&out, &toml).unwrap();
    let (code, err) = check_config(&out);
    assert_eq!(code, 0, "check-config refused:\n{err}\n{toml}");

    // Served (on a free port, through the env override registry:2 users set).
    let (code, toml, err) = convert(&yml, &[("REGISTRY_HTTP_ADDR", "127.0.0.1:0")]);
    assert_eq!(code, 0, "{err}");
    let root = dir.path().join("data");
    std::fs::write(&out, with_root(&toml, &root)).unwrap();
    let (daemon, base) = serve(&out);
    let http = pki.client();
    let get = |path: &str, creds: Option<(&str, &str)>| {
        let r = http.get(format!("{base}{path}"));
        match creds {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    };
    // docker login: GET /v2/ with the htpasswd user's credentials.
    assert_eq!(
        get("/v2/", Some(("alice", "wonderland")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/v2/", Some(("bob", "builder")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = get("/v2/", None).send().await.unwrap();
    assert_eq!(r.status(), 401, "registry:2 asked everyone to log in");
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        get("/v2/", Some(("alice", "wrong")))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // docker push as alice: blobs, then the manifest.
    let img = image::Image::new(vec![image::tar_with_file("f", b"moved from registry:2")]);
    for (_, blob) in img.blobs() {
        let r = http
            .post(format!("{base}/v2/team/app/blobs/uploads/"))
            .basic_auth("alice", Some("wonderland"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let url = if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            loc
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let r = http
            .put(format!("{url}{sep}digest={}", digest(blob)))
            .basic_auth("alice", Some("wonderland"))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = http
        .put(format!("{base}/v2/team/app/manifests/1.0"))
        .basic_auth("alice", Some("wonderland"))
        .header("content-type", image::OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "push as an htpasswd user");
    // bob pulls it with the same digest.
    let r = get("/v2/team/app/manifests/1.0", Some(("bob", "builder")))
        .header("accept", image::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&img.manifest).as_str()
    );
    // storage.delete.enabled = false: nobody deletes.
    let r = http
        .delete(format!(
            "{base}/v2/team/app/manifests/{}",
            digest(&img.manifest)
        ))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 401 || r.status() == 403,
        "delete disabled as on registry:2: {}",
        r.status()
    );
    drop(daemon);
}

#[tokio::test]
async fn proxy_becomes_an_upstream_without_its_password_and_env_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("cfgreg-ca");
    pki.write(dir.path());
    let htpasswd = dir.path().join("htpasswd");
    common::htpasswd(&htpasswd, &[("alice", "wonderland")]);
    let yml = dir.path().join("config.yml");
    std::fs::write(&yml, production_yml(dir.path(), &htpasswd, PROXY)).unwrap();
    let (code, toml, err) = convert(
        &yml,
        &[
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_LOG_LEVEL", "debug"),
            ("REGISTRY_PROXY_PASSWORD", "an-env-secret"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !toml.contains("a-hub-secret") && !toml.contains("an-env-secret"),
        "{toml}"
    );
    let out = dir.path().join("wharf.toml");
    std::fs::write(&out, &toml).unwrap();
    let (code, err) = check_config(&out);
    assert_eq!(code, 0, "check-config refused:\n{err}\n{toml}");
    let cfg = wharf::config::Config::load(&out).unwrap();
    assert_eq!(cfg.upstream.len(), 1);
    assert_eq!(cfg.upstream[0].name, "docker.io");
    assert_eq!(cfg.upstream[0].url, "https://registry-1.docker.io");
    assert_eq!(cfg.upstream[0].username.as_deref(), Some("hubuser"));
    assert!(cfg.upstream[0].password_file.is_some());
    assert!(!cfg.hosted.only);
    // The overrides: deletes allowed (no rule withholds them), debug logs.
    assert!(cfg.auth.rule.is_empty(), "{toml}");
    assert_eq!(cfg.log.level, "debug");
    assert!(toml.contains("REGISTRY_STORAGE_DELETE_ENABLED"), "{toml}");

    // Without the overrides, deletes are withheld by a rule.
    let (_, toml, _) = convert(&yml, &[]);
    std::fs::write(&out, &toml).unwrap();
    let cfg = wharf::config::Config::load(&out).unwrap();
    assert_eq!(cfg.auth.rule.len(), 1, "{toml}");
    assert!(
        !cfg.auth.rule[0]
            .actions
            .contains(&wharf::config::Action::Delete)
    );
}

#[tokio::test]
async fn without_proxy_the_output_is_a_plain_private_registry() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("config.yml");
    std::fs::write(
        &yml,
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n",
    )
    .unwrap();
    let (code, toml, err) = convert(&yml, &[]);
    assert_eq!(code, 0, "{err}");
    let out = dir.path().join("wharf.toml");
    std::fs::write(&out, &toml).unwrap();
    assert_eq!(check_config(&out).0, 0, "{toml}");
    let cfg = wharf::config::Config::load(&out).unwrap();
    assert!(cfg.hosted.only && cfg.upstream.is_empty(), "{toml}");
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:5000");
    assert!(toml.contains("wharf import /srv/registry"), "{toml}");
}

#[tokio::test]
async fn a_missing_or_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let (code, out, err) = convert(&missing, &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("cannot read") && err.contains("nope.yml"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.yml");
    std::fs::write(&garbage, "http:\n  addr: [unclosed\n  tls: {\n").unwrap();
    let (code, out, err) = convert(&garbage, &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("not valid YAML") && err.contains("garbage.yml"),
        "{err}"
    );

    let scalar = dir.path().join("scalar.yml");
    std::fs::write(&scalar, "just some words\n").unwrap();
    let (code, _, err) = convert(&scalar, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not a registry:2 configuration"), "{err}");
}
