//! A private dockerd for tests: vfs storage, no iptables, no bridge, its own
//! directories and socket, and its own docker CLI config (logins stay here).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A dockerd of the test's own, stopped on drop.
pub struct Dockerd {
    child: Child,
    sock: PathBuf,
    cli_config: PathBuf,
}

impl Dockerd {
    /// Starts dockerd in `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Dockerd {
        Dockerd::start_with(dir, &[])
    }

    /// [`Dockerd::start`] with extra daemon flags (`--registry-mirror=...`).
    pub fn start_with(dir: &Path, extra: &[String]) -> Dockerd {
        let sock = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--bridge=none",
                "--ip-masq=false",
            ])
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("docker.pid").display()))
            .arg(format!("-H=unix://{}", sock.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd");
        let cli_config = dir.join("cli");
        std::fs::create_dir_all(&cli_config).unwrap();
        let d = Dockerd {
            child,
            sock,
            cli_config,
        };
        // dockerd has no readiness signal but its API: ask it until it answers.
        super::await_daemon(60, &dir.join("dockerd.log"), || {
            d.docker(&["version"]).status.success()
        });
        d
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("--config")
            .arg(&self.cli_config)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// Runs the docker CLI and insists it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        super::terminate(&mut self.child);
    }
}

impl Dockerd {
    /// Loads a `docker save` archive holding `local/app:v1`, tags it `target`
    /// and pushes it; returns the manifest digest docker reports.
    pub fn load_tag_push(&self, archive: &Path, target: &str) -> String {
        self.ok(&["load", "-i", archive.to_str().unwrap()]);
        self.ok(&["tag", "local/app:v1", target]);
        let out = self.ok(&["push", target]);
        let digest = out
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .expect("push prints the digest")
            .to_owned();
        self.ok(&["rmi", target, "local/app:v1"]);
        digest
    }

    /// Pulls `target` and checks docker recorded `digest` for it.
    pub fn pull_and_check(&self, host: &str, repo: &str, target: &str, digest: &str) {
        self.ok(&["pull", target]);
        let repo_digest = self.ok(&["inspect", "--format", "{{index .RepoDigests 0}}", target]);
        assert_eq!(repo_digest.trim(), format!("{host}/{repo}@{digest}"));
    }

    /// `docker login` with the password on stdin.
    pub fn login(&self, host: &str, user: &str, password: &str) -> std::process::Output {
        use std::io::Write;
        let mut c = Command::new("docker")
            .arg("--config")
            .arg(&self.cli_config)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        c.stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    }
}

/// Trust for a registry served over TLS: dockerd reads
/// `/etc/docker/certs.d/<host:port>/ca.crt`; removed on drop.
pub struct CertsD(PathBuf);

impl CertsD {
    /// Installs `ca_pem` for `host_port`.
    pub fn install(host_port: &str, ca_pem: &str) -> CertsD {
        let dir = PathBuf::from("/etc/docker/certs.d").join(host_port);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
        CertsD(dir)
    }
}

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
