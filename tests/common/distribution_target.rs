//! Distribution 2.8.2 (Debian's `docker-registry`) as a push target: htpasswd
//! auth and `storage.delete.enabled`, and a look at the upload sessions it
//! holds open.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running Distribution, stopped on drop.
pub struct DistributionTarget {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its storage root.
    pub data: PathBuf,
}

impl Drop for DistributionTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DistributionTarget {
    /// Upload sessions open in any repository: `_uploads/<uuid>/data` files.
    /// (A cancelled session loses its `data`; 2.8.2 leaves the rest of the
    /// directory behind.)
    pub fn open_uploads(&self) -> usize {
        fn walk(dir: &Path, inside_uploads: bool) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| {
                    if inside_uploads {
                        usize::from(e.path().join("data").exists())
                    } else {
                        walk(&e.path(), e.file_name() == "_uploads")
                    }
                })
                .sum()
        }
        walk(&self.data.join("docker/registry/v2/repositories"), false)
    }
}

/// Starts Distribution in `dir` with htpasswd users `users` and deletes
/// enabled; returns once `/v2/` answers.
pub fn start(dir: &Path, users: &[(&str, &str)]) -> DistributionTarget {
    let pw = dir.join("htpasswd");
    super::htpasswd(&pw, users);
    let data = dir.join("data");
    for _ in 0..5 {
        let port = super::nginx::free_port();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: dist\n    path: {}\n",
                data.display(),
                pw.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        let mut d = DistributionTarget {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data: data.clone(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = d.child.try_wait() {
                break; // exited, probably a taken port: try another
            }
            if reqwest::blocking::get(format!("{}/v2/", d.base)).is_ok() {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    panic!(
        "docker-registry could not start; see {}",
        dir.join("registry.log").display()
    );
}
