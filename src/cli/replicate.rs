//! `wharf replicate [--now]`: each replication target's queue length, last
//! success and last error; `--now` runs a pass (both sides compared) first
//! and prints what it did.

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{Table, ago, now, size, text, until};

/// Prints the targets; with `now`, runs a pass first.
pub(super) fn replicate(c: &Client, run_now: bool) -> Result<(), CliError> {
    if run_now {
        let report = c.post("replicate", &json!({}))?;
        if c.json {
            c.print_json(&report);
            return Ok(());
        }
        print_pass(&report);
    }
    let v = c.get("replicate")?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let targets: Vec<&Value> = v["targets"].as_array().into_iter().flatten().collect();
    if targets.is_empty() {
        println!("no [[replicate]] rules are configured");
        return Ok(());
    }
    let now = now();
    let mut t = Table::new(&[
        "TARGET",
        "REPOS",
        ">QUEUED",
        "LAST SUCCESS",
        "LAST COMPARED",
        "RETRY",
        ">DONE",
        ">FAILED",
        "DELETES",
    ]);
    let mut errors = Vec::new();
    for x in &targets {
        let repos: Vec<String> = x["repos"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        if let Some(e) = x["last_error"].as_str() {
            errors.push(format!(
                "{} ({}): {e}",
                text(&x["target"]),
                ago(&x["last_error_at"], now)
            ));
        }
        t.row(vec![
            text(&x["target"]),
            repos.join(","),
            text(&x["queued"]),
            ago(&x["last_success"], now),
            ago(&x["last_reconcile"], now),
            match &x["retry_at"] {
                Value::Number(n) if n.as_u64().is_some_and(|r| r > now) => {
                    until(&x["retry_at"], now)
                }
                _ => "-".into(),
            },
            text(&x["items_done"]),
            text(&x["items_failed"]),
            if x["delete"] == true {
                "follow"
            } else {
                "kept"
            }
            .into(),
        ]);
    }
    t.print();
    for e in errors {
        println!("last error of {e}");
    }
    Ok(())
}

fn print_pass(report: &Value) {
    for t in report["targets"].as_array().into_iter().flatten() {
        println!(
            "{}: copied {}, deleted {}, blobs sent {} ({}), mounted {}, present {}, failed {}, dropped {}, {} left{}",
            text(&t["target"]),
            text(&t["copied"]),
            text(&t["deleted"]),
            text(&t["blobs_sent"]),
            size(t["bytes_sent"].as_u64().unwrap_or(0)),
            text(&t["blobs_mounted"]),
            text(&t["blobs_present"]),
            text(&t["failed"]),
            text(&t["dropped"]),
            text(&t["left"]),
            match t["error"].as_str() {
                Some(e) => format!(" — {e}"),
                None => String::new(),
            }
        );
    }
}
