//! podman, buildah and skopeo (containers/image) with nothing of the host's:
//! private vfs storage under the test's directory, and their own
//! `registries.conf`, auth file, `containers.conf` and signature policy, all
//! named by environment variables so `/etc/containers` and `~/.config` are never
//! read or written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One private containers/image environment.
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    /// Creates the environment in `dir`: no mirror, no logins.
    pub fn new(dir: &Path) -> Containers {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let c = Containers {
            dir: dir.to_path_buf(),
        };
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {:?}\nrunroot = {:?}\n",
                c.root().display().to_string(),
                c.runroot().display().to_string()
            ),
        )
        .unwrap();
        // Root podman in a sandbox: no systemd, no journald.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = {:?}\ntmp_dir = {:?}\n",
                dir.join("events.log").display().to_string(),
                dir.join("libpod-tmp").display().to_string()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        // buildah insists that a named auth file exists.
        std::fs::write(c.auth_file(), r#"{"auths":{}}"#).unwrap();
        c
    }

    /// Makes `mirror` (`127.0.0.1:PORT`, plain HTTP) the mirror of `docker.io`,
    /// the way an operator writes it in `/etc/containers/registries.conf`.
    pub fn mirror_docker_io(&self, mirror: &str) {
        std::fs::write(
            self.dir.join("registries.conf"),
            format!(
                "unqualified-search-registries = []\n[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
            ),
        )
        .unwrap();
    }

    /// The auth file `podman login` writes (`REGISTRY_AUTH_FILE`).
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.json")
    }

    /// The registries the auth file holds credentials for.
    pub fn logins(&self) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.auth_file()).unwrap()).unwrap();
        v["auths"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn root(&self) -> PathBuf {
        self.dir.join("storage")
    }

    fn runroot(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `tool` (`podman`, `buildah` or `skopeo`) with this environment. podman
    /// and buildah get the private storage as flags too, and their `pull` and
    /// `push` the private signature policy.
    pub fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(tool);
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("TMPDIR", self.dir.join("tmp"));
        let policy = self.dir.join("policy.json");
        // podman reads CONTAINERS_REGISTRIES_CONF itself; skopeo and buildah
        // take the file only as a (hidden) global flag.
        let registries = self.dir.join("registries.conf");
        if tool != "podman" {
            c.arg("--registries-conf").arg(&registries);
        }
        match tool {
            "skopeo" => {
                c.arg("--policy").arg(&policy);
                c.args(args);
            }
            _ => {
                c.arg("--root")
                    .arg(self.root())
                    .arg("--runroot")
                    .arg(self.runroot())
                    .args(["--storage-driver", "vfs"]);
                let (sub, rest) = args.split_first().expect("a subcommand");
                c.arg(sub);
                if *sub == "pull" || *sub == "push" {
                    c.arg("--signature-policy").arg(&policy);
                }
                c.args(rest);
            }
        }
        c
    }

    /// Runs `tool args`.
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.command(tool, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    /// Runs `tool args` and insists it succeeds; returns stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `tool args` and insists it fails; returns stderr.
    pub fn fails(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            !out.status.success(),
            "{tool} {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs `tool args` with `input` on stdin (`login --password-stdin`).
    pub fn ok_with_stdin(&self, tool: &str, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(tool, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
