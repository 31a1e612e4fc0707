//! Distribution 2.8.2 (Debian's `docker-registry`) with htpasswd and its
//! debug listener serving Prometheus metrics: the requests it served
//! (`registry_http_requests_total`), for benches that compare what clients
//! asked of it.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Server, free_port, wait_ready};

/// A Distribution and the base URL of its metrics listener.
pub struct Debugged {
    pub server: Server,
    /// `http://127.0.0.1:PORT` serving `/metrics`.
    pub metrics: String,
}

/// Starts Distribution on `dir` with Basic auth from `htpasswd` and deletes
/// enabled; `None` when it is not installed.
pub fn start(dir: &Path, htpasswd: &Path) -> Option<Debugged> {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let (port, debug) = (free_port(), free_port());
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  debug:\n    addr: 127.0.0.1:{debug}\n    prometheus:\n      enabled: true\n      path: /metrics\nauth:\n  htpasswd:\n    realm: bench\n    path: {}\n",
            dir.join("data").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);
    Some(Debugged {
        server: Server {
            name: "distribution",
            child,
            base,
            creds: None,
            access_lines: None,
        },
        metrics: format!("http://127.0.0.1:{debug}"),
    })
}
