//! The ORAS Python SDK (`pip install oras`, `oras.client.OrasClient`) as the
//! oras client: the Go CLI is not installable here. A small script, written to
//! the test's directory, pushes or pulls one artifact and prints JSON.

use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import json, sys
import oras.client
import oras.decorator

# oras-py retries a failed request five times, sleeping 3 s to 29 s between
# tries: a refused push would take a minute. The retries stay; the waits go.
oras.decorator.time.sleep = lambda seconds: None

req = json.loads(sys.argv[1])
client = oras.client.OrasClient(hostname=req["host"], insecure=True)
if req.get("user"):
    # oras-py's login records the credentials in the config file it is given
    # and in the client; the registry sees them on the first 401.
    client.login(username=req["user"], password=req["password"],
                 hostname=req["host"], config_path=req["config"])
if req["op"] == "push":
    r = client.push(target=req["target"], files=req["files"], config_path=req["config"],
                    do_chunked=True, chunk_size=req["chunk"],
                    disable_path_validation=True)
    print(json.dumps({"status": r.status_code,
                      "digest": r.headers.get("Docker-Content-Digest")}))
else:
    files = client.pull(target=req["target"], outdir=req["outdir"],
                        config_path=req["config"])
    print(json.dumps({"files": files}))
"#;

/// Whether the SDK may be used: `python3` with the `oras` package. Missing:
/// skip loudly, or fail under `WHARF_REQUIRE_INTEROP=1`.
pub fn have_oras() -> bool {
    if !super::have_tool("python3") {
        return false;
    }
    let found = Command::new("python3")
        .args(["-c", "import oras.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("WHARF_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("the oras Python SDK is required (WHARF_REQUIRE_INTEROP=1): pip install oras");
        }
        eprintln!(
            "\n!!! SKIPPED: python3 cannot import `oras` (pip install oras); this interop test did not run !!!\n"
        );
    }
    found
}

/// Runs one request through the script in `dir`, with `HOME` there too, so no
/// docker config of the host's is ever read. Returns the exit status's success,
/// stdout as JSON (Null on failure), and stderr.
pub fn run(dir: &Path, req: &serde_json::Value) -> (bool, serde_json::Value, String) {
    let script = dir.join("oras_client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(req.to_string())
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}
