//! CPU time from /proc: what a server spent per GiB it served, and what the
//! bench itself (a thread, or its waited-for children) spent on a floor.

/// Clock ticks per second of /proc's time fields (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Seconds from a /proc `stat` file: utime + stime, or with `children`
/// cutime + cstime (the waited-for children's). 0 when unreadable.
pub fn stat_cpu_secs(path: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime, stime, cutime and
    // cstime are the 12th to 15th of those.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let at = if children { 13 } else { 11 };
    (f.get(at).unwrap_or(&0.0) + f.get(at + 1).unwrap_or(&0.0)) / TICKS
}

/// CPU seconds of this process's children that have been waited for.
pub fn children_cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat", true)
}

/// CPU seconds of the calling thread.
pub fn thread_cpu_secs() -> f64 {
    stat_cpu_secs("/proc/thread-self/stat", false)
}

/// Seconds per GiB for `secs` spent on `bytes`.
pub fn per_gib(secs: f64, bytes: f64) -> f64 {
    secs / (bytes / f64::from(1u32 << 30))
}
