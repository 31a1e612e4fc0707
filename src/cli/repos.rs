//! `wharf ls [REPO]` and `wharf rm REF`: repositories, their tags, deletions.

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{Table, ago, now, short_digest, size_of, text};

/// Lists every repository, or `repo`'s tags.
pub(super) fn ls(c: &Client, repo: Option<&str>) -> Result<(), CliError> {
    let v = match repo {
        Some(r) => c.get(&format!("repos/{}", r.trim_matches('/')))?,
        None => c.get("repos")?,
    };
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let now = now();
    match repo {
        None => print_repos(&v, now),
        Some(_) => print_tags(&v, now),
    }
    Ok(())
}

fn print_repos(v: &Value, now: u64) {
    let mut t = Table::new(&[
        "REPOSITORY",
        "ORIGIN",
        "UPSTREAM",
        ">TAGS",
        ">MANIFESTS",
        ">SIZE",
        "LAST PULLED",
        "PINNED",
    ]);
    for r in v["repositories"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&r["name"]),
            text(&r["origin"]),
            text(&r["upstream"]),
            text(&r["tags"]),
            text(&r["manifests"]),
            size_of(&r["bytes"]),
            ago(&r["last_pulled"], now),
            if r["pinned"] == true { "yes" } else { "no" }.into(),
        ]);
    }
    t.print();
}

fn print_tags(v: &Value, now: u64) {
    match v["upstream"].as_str() {
        Some(u) => println!("{} ({} from {u})", text(&v["name"]), text(&v["origin"])),
        None => println!("{} ({})", text(&v["name"]), text(&v["origin"])),
    }
    let mut t = Table::new(&["TAG", "DIGEST", ">SIZE", "PLATFORMS", "UPDATED"]);
    for tag in v["tags"].as_array().into_iter().flatten() {
        let platforms: Vec<&str> = tag["platforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        t.row(vec![
            text(&tag["tag"]),
            short_digest(&text(&tag["digest"])),
            size_of(&tag["size"]),
            if platforms.is_empty() {
                "-".into()
            } else {
                platforms.join(",")
            },
            ago(&tag["updated"], now),
        ]);
    }
    t.print();
}

/// Deletes a tag or a manifest.
pub(super) fn rm(c: &Client, reference: &str) -> Result<(), CliError> {
    let v = c.post("rm", &json!({ "reference": reference }))?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let repo = text(&v["repository"]);
    match (v["tag"].as_str(), v["digest"].as_str()) {
        (Some(tag), _) => println!("deleted tag {repo}:{tag}"),
        (None, Some(d)) => println!("deleted manifest {repo}@{d} and its tags"),
        _ => println!("deleted {reference}"),
    }
    Ok(())
}
