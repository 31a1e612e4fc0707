//! Warm blob GETs with curl: the best speed of a few, and what the server
//! spent in CPU per GiB it served over all of them.

use std::process::Command;

use super::cpu::per_gib;
use super::output;

/// What a run of warm GETs measured.
pub struct Warm {
    /// The best of the GETs, bytes/s as curl measured it.
    pub bps: f64,
    /// Server CPU seconds per GiB over all the GETs.
    pub cpu_per_gib: f64,
}

/// GETs `url` `times` times; `cpu` reads the server's CPU seconds so far.
pub fn warm_gets(url: &str, times: usize, cpu: &dyn Fn() -> f64) -> Warm {
    let before = cpu();
    let mut best = 0.0f64;
    let mut bytes = 0.0;
    for _ in 0..times {
        let mut c = Command::new("curl");
        c.args([
            "-sf",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download} %{size_download}",
        ])
        .arg(url);
        let out = output(c, "warm blob GET");
        let mut parts = out.split_whitespace();
        let mut next = || parts.next().and_then(|v| v.parse::<f64>().ok()).unwrap();
        best = best.max(next());
        bytes += next();
    }
    Warm {
        bps: best,
        cpu_per_gib: per_gib(cpu() - before, bytes),
    }
}
