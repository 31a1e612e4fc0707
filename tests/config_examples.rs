//! Every file in `config/` is a working starting point: `wharf check-config`
//! accepts it as shipped, and `wharf serve` starts on it and is ready. The
//! directory is globbed, so a file added later is covered too. To start a file,
//! only what must differ on a test machine is rewritten: the listen address,
//! the data directory, the files it names (htpasswd, passwords, certificates:
//! created in a temporary directory), and every remote URL (pointed at a
//! closed local port, so nothing leaves the machine).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wharf::config::{AnonymousPull, Config};

/// Where nothing listens: remote URLs of the examples are rewritten to it.
const NOWHERE: &str = "http://127.0.0.1:9";

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Files in `config/` that are not wharf configs, each checked elsewhere:
/// the Prometheus alert rules (`tests/metrics.rs` parses them and checks
/// every metric they name).
const NOT_WHARF_CONFIGS: &[&str] = &["prometheus-alerts.yml"];

/// Every wharf config in `config/` (every `.toml`), sorted. Any other file
/// must be one [`NOT_WHARF_CONFIGS`] names, so none goes unchecked.
fn config_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(config_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (toml, other): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|p| p.extension().is_some_and(|e| e == "toml"));
    for p in other {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            NOT_WHARF_CONFIGS.contains(&name.as_str()),
            "config/{name} is neither a wharf config (.toml) nor a file another test checks"
        );
    }
    toml
}

fn check_config(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn every_file_in_config_passes_check_config() {
    let files = config_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "wharf.toml",
        "docker-hub-mirror.toml",
        "private-registry.toml",
        "lan-office.toml",
        "behind-nginx.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
    for f in &files {
        let out = check_config(f);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every file is meant for the packaged service: its data under the
        // unit's StateDirectory.
        let cfg = Config::load(f).unwrap();
        assert_eq!(
            cfg.storage.root,
            Path::new("/var/lib/wharf"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn each_example_is_what_its_name_says() {
    let load = |name: &str| Config::load(&config_dir().join(name)).unwrap();

    let mirror = load("docker-hub-mirror.toml");
    let default = mirror.upstream.iter().find(|u| u.default).unwrap();
    assert_eq!(default.name, "docker.io");
    assert!(!mirror.hosted.claim_on_push, "a mirror takes no pushes");
    assert!(mirror.storage.max_cache_size.0 > 0, "the cache is bounded");
    assert_eq!(mirror.auth.anonymous_pull, AnonymousPull::All);

    let private = load("private-registry.toml");
    assert!(private.hosted.only && private.upstream.is_empty());
    assert!(private.auth.htpasswd.is_some());
    assert_eq!(private.auth.anonymous_pull, AnonymousPull::None);
    assert!(
        private.auth.rule.is_empty(),
        "no rules: users may delete, like registry:2 with delete enabled"
    );

    let office = load("lan-office.toml");
    assert!(office.upstream.iter().any(|u| u.default));
    assert!(!office.hosted.prefixes.is_empty() && office.auth.htpasswd.is_some());
    assert!(!office.peer.is_empty(), "a peer");
    assert!(!office.replicate.is_empty(), "replication to a second site");

    let nginx = load("behind-nginx.toml");
    assert!(
        nginx.server.listen.ip().is_loopback(),
        "only nginx reaches it"
    );
    assert!(!nginx.server.trusted_proxies.is_empty());
}

/// A config file rewritten to run here; returns whether it serves HTTPS and the
/// CA to trust then.
struct Prepared {
    path: PathBuf,
    ca_pem: Option<String>,
}

/// Rewrites `src` into `dir` as little as needed to start it on this machine.
fn prepare(src: &Path, dir: &Path) -> Prepared {
    let text = std::fs::read_to_string(src).unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    let secret = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, "s3cret\n").unwrap();
        toml::Value::String(p.display().to_string())
    };
    let table = |doc: &mut toml::Table, key: &str| -> toml::Table {
        doc.remove(key)
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default()
    };

    let mut server = table(&mut doc, "server");
    server.insert("listen".into(), "127.0.0.1:0".into());
    let mut ca_pem = None;
    if server.contains_key("tls_cert") {
        let pki = common::certs::pki("config-examples");
        let (cert, key) = pki.write(dir);
        server.insert("tls_cert".into(), cert.display().to_string().into());
        server.insert("tls_key".into(), key.display().to_string().into());
        ca_pem = Some(pki.ca_pem);
    }
    doc.insert("server".into(), server.into());

    let mut storage = table(&mut doc, "storage");
    storage.insert("root".into(), dir.join("data").display().to_string().into());
    doc.insert("storage".into(), storage.into());

    let mut auth = table(&mut doc, "auth");
    if auth.contains_key("htpasswd") {
        let p = dir.join("htpasswd");
        common::htpasswd(&p, &[("admin", "pw"), ("ci", "pw")]);
        auth.insert("htpasswd".into(), p.display().to_string().into());
    }
    doc.insert("auth".into(), auth.into());

    for (section, url_key) in [("upstream", "url"), ("peer", "url"), ("replicate", "to")] {
        if let Some(toml::Value::Array(items)) = doc.get_mut(section) {
            for (i, item) in items.iter_mut().enumerate() {
                let t = item.as_table_mut().unwrap();
                t.insert(url_key.into(), NOWHERE.into());
                if t.contains_key("password_file") {
                    t.insert(
                        "password_file".into(),
                        secret(&format!("{section}-{i}.password")),
                    );
                }
            }
        }
    }
    let path = dir.join("wharf.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    Prepared { path, ca_pem }
}

/// `wharf serve` on a prepared file: the child and its base URL.
fn serve(prepared: &Prepared) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&prepared.path)
        // The address line is an info line, whatever level a file asks for.
        .env("WHARF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wharf");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "{}: no `wharf serving` line; it said:\n{}",
                prepared.path.display(),
                seen.join("\n")
            );
        };
        if line.contains("wharf serving") {
            // Text (`addr=1.2.3.4:5`) or JSON (`"addr":"1.2.3.4:5"`) logs.
            let rest = line
                .split("addr=")
                .nth(1)
                .or_else(|| line.split("\"addr\":\"").nth(1))
                .unwrap();
            break rest
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .unwrap()
                .to_owned();
        }
        seen.push(line);
    };
    let scheme = if prepared.ca_pem.is_some() {
        "https"
    } else {
        "http"
    };
    (child, format!("{scheme}://{addr}"))
}

fn client(prepared: &Prepared) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = &prepared.ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// SIGTERM, then the exit code (within a deadline).
fn terminate(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_file_in_config_starts_and_is_ready() {
    for src in config_files() {
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare(&src, dir.path());
        let out = check_config(&prepared.path);
        assert!(
            out.status.success(),
            "{} as rewritten: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let (child, base) = serve(&prepared);
        let http = client(&prepared);
        let ready = http.get(format!("{base}/readyz")).send();
        let health = http.get(format!("{base}/healthz")).send();
        let v2 = http.get(format!("{base}/v2/")).send();
        let code = terminate(child);
        let ready = ready.unwrap();
        assert_eq!(ready.status(), 200, "{}: /readyz", src.display());
        assert_eq!(health.unwrap().status(), 200, "{}: /healthz", src.display());
        // Anonymous clients reach /v2/ only without users; with users they are
        // challenged: Bearer where anonymous pulls go on (the token flow every
        // client follows), Basic where nothing is anonymous (registry:2's way).
        let cfg = Config::load(&src).unwrap();
        let v2 = v2.unwrap();
        let challenge = v2
            .headers()
            .get("www-authenticate")
            .map(|h| h.to_str().unwrap().to_owned())
            .unwrap_or_default();
        match (&cfg.auth.htpasswd, cfg.auth.anonymous_pull) {
            (None, _) => assert_eq!(v2.status(), 200, "{}: /v2/", src.display()),
            (Some(_), AnonymousPull::None) => {
                assert_eq!(v2.status(), 401, "{}", src.display());
                assert!(
                    challenge.starts_with("Basic "),
                    "{}: {challenge}",
                    src.display()
                );
            }
            (Some(_), _) => {
                assert_eq!(v2.status(), 401, "{}", src.display());
                assert!(
                    challenge.starts_with("Bearer "),
                    "{}: {challenge}",
                    src.display()
                );
            }
        }
        assert_eq!(code, Some(0), "{}: exit after SIGTERM", src.display());
    }
}
