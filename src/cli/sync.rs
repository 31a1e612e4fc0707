//! `wharf sync [--now]`: the `[[sync]]` rules and their last passes, or every
//! rule run now and what that pass did.

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{Table, ago, now, size_of, span, text, until};

/// Lists the rules (or, with `run_now`, runs them all and prints the pass).
pub(super) fn sync(c: &Client, run_now: bool) -> Result<(), CliError> {
    if run_now {
        return run(c);
    }
    let v = c.get("sync")?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let rules: Vec<&Value> = v["rules"].as_array().into_iter().flatten().collect();
    if rules.is_empty() {
        println!("no [[sync]] rules are configured");
        return Ok(());
    }
    let now = now();
    let mut t = Table::new(&[
        "IMAGE",
        "TAGS",
        "EVERY",
        "LAST RUN",
        "NEXT RUN",
        ">SEEN",
        ">MATCHED",
        ">UNCHANGED",
        ">FETCHED",
        ">BYTES",
        ">ERRORS",
        "STATE",
    ]);
    let mut notes = Vec::new();
    for r in &rules {
        let last = &r["last"];
        t.row(vec![
            text(&r["image"]),
            globs(r),
            span(r["every_seconds"].as_u64().unwrap_or(0)),
            ago(&r["last_run"], now),
            match &r["next_run"] {
                Value::Null => "now".into(),
                next => until(next, now),
            },
            text(&last["tags_seen"]),
            text(&last["matched"]),
            text(&last["unchanged"]),
            text(&last["fetched"]),
            size_of(&last["bytes_fetched"]),
            text(&last["errors"]),
            state(last),
        ]);
        notes.extend(details(last));
    }
    t.print();
    for n in notes {
        println!("{n}");
    }
    Ok(())
}

/// Runs every rule now and prints what each did.
fn run(c: &Client) -> Result<(), CliError> {
    let v = c.post("sync", &json!({}))?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let mut t = Table::new(&[
        "IMAGE",
        "TAGS",
        ">SEEN",
        ">MATCHED",
        ">UNCHANGED",
        ">FETCHED",
        ">BYTES",
        ">ERRORS",
        ">TIME",
        "STATE",
    ]);
    let mut notes = Vec::new();
    let rules: Vec<&Value> = v["rules"].as_array().into_iter().flatten().collect();
    for r in &rules {
        t.row(vec![
            text(&r["image"]),
            globs(r),
            text(&r["tags_seen"]),
            text(&r["matched"]),
            text(&r["unchanged"]),
            text(&r["fetched"]),
            size_of(&r["bytes_fetched"]),
            text(&r["errors"]),
            format!("{} ms", text(&r["duration_ms"])),
            state(r),
        ]);
        notes.extend(details(r));
    }
    t.print();
    for n in notes {
        println!("{n}");
    }
    let fetched: u64 = rules.iter().filter_map(|r| r["fetched"].as_u64()).sum();
    let errors: u64 = rules.iter().filter_map(|r| r["errors"].as_u64()).sum();
    println!(
        "sync ran {} rule{}: {fetched} tags fetched, {errors} errors",
        rules.len(),
        if rules.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// A rule's tag globs, comma-separated.
fn globs(r: &Value) -> String {
    let v: Vec<&str> = r["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    v.join(",")
}

/// `ok`, `paused`, `failed`, `errors` or `never run` for one pass.
fn state(pass: &Value) -> String {
    if pass.is_null() {
        return "never run".into();
    }
    if !pass["failed"].is_null() {
        return "failed".into();
    }
    if !pass["paused"].is_null() {
        return "paused".into();
    }
    if pass["errors"].as_u64().unwrap_or(0) > 0 {
        return "errors".into();
    }
    if pass["truncated"] == true {
        return "truncated".into();
    }
    "ok".into()
}

/// The lines under the table: why a rule failed or paused, its first errors.
fn details(pass: &Value) -> Vec<String> {
    let image = text(&pass["image"]);
    let mut out = Vec::new();
    if let Some(f) = pass["failed"].as_str() {
        out.push(format!("{image}: tag list failed: {f}"));
    }
    if let Some(p) = pass["paused"].as_str() {
        out.push(format!("{image}: paused: {p}"));
    }
    for e in pass["error_messages"].as_array().into_iter().flatten() {
        out.push(format!("{image}: {}", text(e)));
    }
    out
}
