//! `wharf status`: version, build, uptime, and every worker's last run, next run,
//! result and what it did.

use serde_json::Value;

use super::client::{CliError, Client};
use super::format::{Table, ago, now, span, text, until};

/// Prints the daemon's status.
pub(super) fn status(c: &Client) -> Result<(), CliError> {
    let v = c.get("status")?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let b = &v["build"];
    let commit = match b["commit"].as_str() {
        Some(c) => format!("commit {c}, "),
        None => String::new(),
    };
    println!(
        "wharf {} ({commit}built {}, {}), up {}",
        text(&v["version"]),
        text(&b["date"]),
        text(&b["profile"]),
        span(v["uptime_seconds"].as_u64().unwrap_or(0))
    );
    let now = now();
    let mut t = Table::new(&[
        "WORKER",
        "STATE",
        "LAST RUN",
        "RESULT",
        "NEXT RUN",
        ">RUNS",
        ">FAILED",
        "LAST REPORT",
    ]);
    let mut errors = Vec::new();
    for w in v["workers"].as_array().into_iter().flatten() {
        let state = match (&w["running"], w["progress"].as_array()) {
            (Value::Bool(true), Some(p)) => {
                format!("running {}/{}", text(&p[0]), text(&p[1]))
            }
            (Value::Bool(true), None) => "running".into(),
            _ => "idle".into(),
        };
        if let Some(e) = w["last_error"].as_str() {
            errors.push(format!("{}: {e}", text(&w["name"])));
        }
        t.row(vec![
            text(&w["name"]),
            state,
            ago(&w["last_run"], now),
            text(&w["last_result"]),
            match &w["next_run"] {
                Value::Null => "on demand".into(),
                next => until(next, now),
            },
            text(&w["runs"]),
            text(&w["failures"]),
            report(&w["last_report"]),
        ]);
    }
    t.print();
    for e in errors {
        println!("last error of {e}");
    }
    Ok(())
}

/// A report object as `key=value` pairs (nested values as compact JSON).
fn report(v: &Value) -> String {
    match v {
        Value::Object(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| match v {
                Value::Array(a) => format!("{k}={}", a.len()),
                other => format!("{k}={}", text(other)),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => "-".into(),
        other => text(other),
    }
}
