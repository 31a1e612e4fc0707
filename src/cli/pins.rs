//! `wharf pin [REF]` and `wharf unpin REF`: images eviction never takes.

use serde_json::json;

use super::client::{CliError, Client};
use super::format::{Table, text};

/// Pins `reference`; without one, lists the pins.
pub(super) fn pin(c: &Client, reference: Option<&str>) -> Result<(), CliError> {
    let Some(reference) = reference else {
        let v = c.get("pins")?;
        if c.json {
            c.print_json(&v);
            return Ok(());
        }
        let mut t = Table::new(&["REFERENCE", "DIGEST"]);
        for p in v["pins"].as_array().into_iter().flatten() {
            t.row(vec![text(&p["reference"]), text(&p["digest"])]);
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
