//! `docker push` and `docker pull` against wharf, through a private dockerd that
//! this test starts (vfs storage, no iptables, no bridge, its own directories).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::image::{Image, docker_archive, tar_with_file};
use common::{Wharf, bytes, have_tool, http};

/// A dockerd of the test's own, stopped on drop.
pub struct Dockerd {
    child: Child,
    sock: PathBuf,
}

impl Dockerd {
    /// Starts dockerd in `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Dockerd {
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
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { child, sock };
        // dockerd has no readiness signal but its API: ask it until it answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not come up; see {}",
                dir.join("dockerd.log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        d
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
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
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_push_and_pull() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let host = w.addr.to_string();
    let img = Image::new(vec![
        tar_with_file("big.bin", &bytes(3 << 20, 9)),
        tar_with_file("hello.txt", b"hello from wharf"),
    ]);
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, docker_archive(&img, "local/app:v1")).unwrap();

    let target = format!("{host}/team/app:v1");
    let pushed = tokio::task::spawn_blocking(move || {
        let d = Dockerd::start(&ddir);
        d.ok(&["load", "-i", archive.to_str().unwrap()]);
        d.ok(&["tag", "local/app:v1", &target]);
        let out = d.ok(&["push", &target]);
        let digest = out
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .expect("push prints the digest")
            .to_owned();
        d.ok(&["rmi", &target, "local/app:v1"]);
        d.ok(&["pull", &target]);
        let repo_digest = d.ok(&["inspect", "--format", "{{index .RepoDigests 0}}", &target]);
        assert_eq!(repo_digest.trim(), format!("{host}/team/app@{digest}"));
        // The pulled image is the pushed one: same config (image id).
        let id = d.ok(&["inspect", "--format", "{{.Id}}", &target]);
        (digest, id.trim().to_owned())
    })
    .await
    .unwrap();
    assert_eq!(pushed.1, common::digest(&img.config));
    let r = http()
        .head(w.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], pushed.0.as_str());
    w.stop().await;
}
