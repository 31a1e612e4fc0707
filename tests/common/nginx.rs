//! nginx in front of test servers: a TLS-terminating proxy, or a registry front
//! that redirects blobs to a "CDN". Runs as one foreground process with its own
//! prefix, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running nginx.
pub struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago (nginx cannot take a bound socket).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts nginx with the `http { }` body `servers(ports)` on `n` fresh ports,
/// and waits until `ready(ports)` answers. Retries with other ports if one was
/// taken in between.
pub fn start(
    dir: &Path,
    n: usize,
    servers: impl Fn(&[u16]) -> String,
    ready: impl Fn(&[u16]) -> bool,
) -> (Nginx, Vec<u16>) {
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let conf = format!(
            "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
            servers(&ports),
            d = dir.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited, probably a taken port: try others
            }
            if ready(&ports) {
                return (Nginx(child), ports);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    panic!(
        "nginx could not start; see {}",
        dir.join("error.log").display()
    );
}

/// nginx on one fresh port whose `location /` holds `location`; returns once it
/// answers anything on `/v2/`.
pub async fn front(dir: std::path::PathBuf, location: String) -> (Nginx, u16) {
    std::fs::create_dir_all(&dir).unwrap();
    tokio::task::spawn_blocking(move || {
        let servers = |p: &[u16]| {
            format!("  server {{\n    listen 127.0.0.1:{};\n    location / {{\n{location}\n    }}\n  }}", p[0])
        };
        let ready = |p: &[u16]| reqwest::blocking::get(format!("http://127.0.0.1:{}/v2/", p[0])).is_ok();
        let (n, ports) = start(&dir, 1, servers, ready);
        (n, ports[0])
    })
    .await
    .unwrap()
}
