//! `wharf pin [REF]` and `wharf unpin REF`: images eviction never takes.

use serde_json::json;

use super::client::{CliError, Client};
use super::format::{Table, ago, now, text};

/// Pins `reference`; without one, lists the pins.
pub(super) fn pin(c: &Client, reference: Option<&str>) -> Result<(), CliError> {
    let Some(reference) = reference else {
        let v = c.get("pins")?;
        if c.json {
            c.print_json(&v);
            return Ok(());
        }
        let pins: Vec<&serde_json::Value> = v["pins"].as_array().into_iter().flatten().collect();
        if pins.is_empty() {
            println!("no pins (wharf pin REF pins an image)");
            return Ok(());
        }
        let now = now();
        let mut t = Table::new(&["REFERENCE", "DIGEST", "PINNED"]);
        for p in pins {
            t.row(vec![
                text(&p["reference"]),
                text(&p["digest"]),
                ago(&p["created"], now),
            ]);
        }
        t.print();
        return Ok(());
    };
    let v = c.post("pin", &json!({ "reference": reference }))?;
    if c.json {
        c.print_json(&v);
    } else {
        println!("pinned {} ({})", text(&v["reference"]), text(&v["digest"]));
    }
    Ok(())
}

/// Removes the pin of `reference`.
pub(super) fn unpin(c: &Client, reference: &str) -> Result<(), CliError> {
    let v = c.post("unpin", &json!({ "reference": reference }))?;
    if c.json {
        c.print_json(&v);
    } else {
        println!(
            "unpinned {} ({})",
            text(&v["reference"]),
            text(&v["digest"])
        );
    }
    Ok(())
}
