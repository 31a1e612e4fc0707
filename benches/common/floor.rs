//! The cold fill's CPU floor on this machine, measured in the same run: what
//! any mirror must at least spend to keep a blob it checks, namely writing its
//! bytes into a fresh page cache (`dd` into a new file) plus one SHA-256 pass
//! (the `sha2` crate, as wharf hashes).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use super::cpu::{children_cpu_secs, per_gib, thread_cpu_secs};

/// The floor's parts, in CPU seconds per GiB.
pub struct Floor {
    pub dd: f64,
    pub sha256: f64,
}

impl Floor {
    /// dd + sha256, seconds per GiB.
    pub fn total(&self) -> f64 {
        self.dd + self.sha256
    }
}

/// Measures the floor for `blob` (its bytes are hashed), writing the dd file
/// in `dir` (on the filesystem of the mirrors' data) and deleting it after.
pub fn cold_fill_floor(dir: &Path, blob: &Path) -> Floor {
    let bytes = std::fs::metadata(blob).unwrap().len();
    let mib = bytes.div_ceil(1 << 20);
    let target = dir.join("floor-dd.bin");
    let _ = std::fs::remove_file(&target);
    // Every child this process waits for adds to cutime: nothing else may be
    // waited for between the two readings (the bench is sequential here).
    let before = children_cpu_secs();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", &format!("count={mib}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let dd = children_cpu_secs() - before;
    assert!(status.success(), "dd into {}", target.display());
    std::fs::remove_file(&target).unwrap();

    let before = thread_cpu_secs();
    let mut f = std::fs::File::open(blob).unwrap();
    let mut h = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        h.update(&chunk[..n]);
    }
    std::hint::black_box(h.finalize());
    let sha256 = thread_cpu_secs() - before;
    Floor {
        dd: per_gib(dd, (mib << 20) as f64),
        sha256: per_gib(sha256, bytes as f64),
    }
}
