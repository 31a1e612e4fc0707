//! The benches' printed tables: one row per measure with wharf, Distribution
//! and nginx side by side (ratio wharf / Distribution), and a goals section
//! that checks an issue's ratios against their targets in the same run.

/// A table's title and column heads.
pub fn header(title: &str) {
    println!("\n{title}");
    println!(
        "{:<48} {:>12} {:>14} {:>12} {:>8}",
        "measure", "wharf", "distribution", "nginx", "w/d"
    );
}

/// A measure for each server that has it (`None`: not measured or not installed).
pub fn row(name: &str, w: f64, d: Option<f64>, n: Option<f64>) {
    let opt = |v: Option<f64>, width: usize| match v {
        Some(v) => format!("{v:>width$.2}"),
        None => format!("{:>width$}", "-"),
    };
    let ratio = d
        .map(|d| w / d)
        .filter(|r| r.is_finite())
        .map(|r| format!("{r:>7.2}x"))
        .unwrap_or_default();
    println!("{name:<48} {w:>12.2} {} {} {ratio}", opt(d, 14), opt(n, 12));
}

/// A row of text (statuses) for wharf and Distribution.
pub fn text_row(name: &str, w: &str, d: &str) {
    println!("{name:<48} {w:>12} {d:>14}");
}

/// A target for a ratio or a figure.
#[derive(Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// Equal to two decimals (a count per request).
    Exactly(f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(g) => v >= g,
            Goal::AtMost(g) => v <= g,
            Goal::Below(g) => v < g,
            Goal::Exactly(g) => (v - g).abs() < 0.005,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {g:.2}"),
            Goal::AtMost(g) => format!("<= {g:.2}"),
            Goal::Below(g) => format!("< {g:.2}"),
            Goal::Exactly(g) => format!("= {g:.2}"),
        }
    }
}

/// The head of a goals section for `issue` ("issue 10").
pub fn goals_header(issue: &str) {
    println!(
        "{:<48} {:>12} {:>14}",
        format!("goal ({issue})"),
        "value",
        "target"
    );
}

/// One goal: the value, its target and whether it is met (`n/a` when a
/// reference is missing from this run).
pub fn goal(name: &str, value: Option<f64>, target: Goal) {
    match value.filter(|v| v.is_finite()) {
        Some(v) => {
            let verdict = if target.met(v) { "ok" } else { "MISS" };
            println!("{name:<48} {v:>12.2} {:>14} {verdict}", target.text());
        }
        None => println!("{name:<48} {:>12} {:>14}", "n/a", target.text()),
    }
}

/// The head of a table with one row per case (a registry and its storage):
/// wall time, throughput, peak RSS, requests its bucket received, and its
/// time against two reference cases of the same run.
pub fn case_header(title: &str) {
    println!("\n{title}");
    println!(
        "{:<30} {:>8} {:>8} {:>9} {:>8} {:>9} {:>10}",
        "case", "wall s", "MB/s", "RSS MiB", "S3 reqs", "t/fs", "t/dist-s3"
    );
}

/// One case's row (`None`: not measured, or a reference missing from the run).
pub fn case_row(
    name: &str,
    secs: f64,
    mbps: f64,
    rss_mib: f64,
    reqs: Option<usize>,
    vs_fs: Option<f64>,
    vs_dist: Option<f64>,
) {
    let opt = |v: Option<f64>, width: usize| match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:>width$.2}"),
        None => format!("{:>width$}", "-"),
    };
    let reqs = reqs.map_or_else(|| "-".to_owned(), |r| r.to_string());
    println!(
        "{name:<30} {secs:>8.2} {mbps:>8.1} {rss_mib:>9.1} {reqs:>8} {} {}",
        opt(vs_fs, 9),
        opt(vs_dist, 10)
    );
}
