//! nginx as the reference row: the same bytes served as static files by a
//! server built for nothing else (a manifest as a small file, a blob through
//! `sendfile`), so every run measures the machine's limit beside the result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Server, free_port, wait_ready};

/// Where Debian installs nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// One file nginx serves at an exact URL path.
pub struct Static {
    /// The URL path (`/v2/bench/app/manifests/latest`), the same one the
    /// registries answer, so the same load generator runs against both.
    pub url_path: String,
    /// The file whose bytes are served, as is (no copy: the same page cache).
    pub file: PathBuf,
    /// The Content-Type the registries send for these bytes.
    pub content_type: String,
}

/// nginx running in the foreground as a child; stopped on drop.
pub struct Nginx {
    pub server: Server,
    prefix: PathBuf,
}

/// Starts nginx in `dir` (its prefix: config, pid file, logs and temp files
/// stay there) serving `files`; `None`, with a loud line, when nginx is missing.
pub fn start_nginx(dir: &Path, files: &[Static]) -> Option<Nginx> {
    if !Path::new(NGINX).exists() {
        println!("!!! nginx is not installed ({NGINX}): skipping its reference rows !!!");
        return None;
    }
    let port = free_port();
    let d = dir.display();
    let locations: String = files
        .iter()
        .map(|f| {
            format!(
                "    location = {} {{ alias {}; default_type {}; }}\n",
                f.url_path,
                f.file.display(),
                f.content_type
            )
        })
        .collect();
    // As root the workers would run as `nobody`, who cannot read the bench's
    // private temp dir; keep them as the bench's own user.
    let user = if is_root() { "user root;\n" } else { "" };
    let conf = format!(
        "{user}worker_processes auto;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   types {{}}\n\
         \x20   access_log off;\n\
         \x20   sendfile on;\n\
         \x20   tcp_nopush on;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   keepalive_timeout 300s;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         {locations}\
         \x20   }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        // The compiled-in error log (/var/log/nginx) is opened before the config is read.
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        name: "nginx",
        child,
        base,
        creds: None,
        access_lines: None,
    };
    let nginx = Nginx {
        server,
        prefix: dir.to_owned(),
    };
    wait_ready(&nginx.server.base);
    Some(nginx)
}

impl Nginx {
    /// CPU seconds (user + system) of the master and its live workers: the
    /// master's counters for reaped children stay empty while the workers live.
    pub fn cpu_secs(&self) -> f64 {
        let master = self.server.child.id();
        self.server.cpu_secs() + children(master).into_iter().map(pid_cpu_secs).sum::<f64>()
    }
}

impl Drop for Nginx {
    /// SIGKILL on the master would leave its workers serving; a fast shutdown
    /// (SIGTERM) makes the master stop them and wait for them before exiting.
    fn drop(&mut self) {
        let _ = Command::new(NGINX)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.server.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still up: the Server's own drop kills the master.
    }
}

/// Whether the bench runs as root (`Uid:` of /proc/self/status, real uid).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// The live children of `parent` (by the ppid field of /proc/PID/stat).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|f| f.get(1).cloned())
                .is_some_and(|ppid| ppid == parent.to_string())
        })
        .collect()
}

/// The fields of /proc/PID/stat after the parenthesised command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU seconds (user + system) of one process.
fn pid_cpu_secs(pid: u32) -> f64 {
    super::cpu::stat_cpu_secs(&format!("/proc/{pid}/stat"), false)
}
