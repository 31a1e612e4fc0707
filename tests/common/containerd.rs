//! A private containerd for tests: its own root, state and socket, the CRI
//! plugin off. Driven with `ctr`, which resolves registries through a
//! `hosts.toml` directory the way containerd does for Kubernetes nodes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A containerd of the test's own, stopped on drop.
pub struct Containerd {
    child: Child,
    sock: PathBuf,
}

impl Containerd {
    /// Starts containerd in `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Containerd {
        let sock = dir.join("containerd.sock");
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
                dir.join("root").display().to_string(),
                dir.join("state").display().to_string(),
                sock.display().to_string(),
                format!("{}.ttrpc", sock.display()),
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("start containerd");
        let c = Containerd { child, sock };
        // containerd's readiness signal is its API: ask it until it answers.
        super::await_daemon(30, &dir.join("containerd.log"), || {
            c.ctr(&["version"]).status.success()
        });
        c
    }

    /// Runs `ctr` against this daemon.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// Runs `ctr` and insists it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        super::terminate(&mut self.child);
    }
}
