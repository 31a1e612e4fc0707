//! `log.*` (and the old top-level `loglevel`) → `[log]`.

use super::draft::{Draft, kv, kv_note};
use super::tree::Node;

/// Maps and removes the log keys of `root`.
pub(super) fn map(root: &mut Node, d: &mut Draft) {
    let level = root
        .take_str("log.level")
        .or_else(|| root.take_str("loglevel"));
    root.take("loglevel");
    if let Some(l) = level {
        let wharf = match l.to_ascii_lowercase().as_str() {
            "debug" | "trace" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "error" | "fatal" | "panic" => "error",
            _ => {
                d.unmapped("log.level", &format!("{l:?} is not a level wharf knows"));
                "info"
            }
        };
        d.log
            .push(kv_note("level", wharf, &format!("log.level {l:?}")));
    }
    if let Some(f) = root.take_str("log.formatter") {
        match f.as_str() {
            "text" => d.log.push(kv("format", "text")),
            "json" | "logstash" => {
                d.log
                    .push(kv_note("format", "json", &format!("log.formatter {f:?}")))
            }
            other => d.unmapped(
                "log.formatter",
                &format!("{other:?}: wharf writes text or json"),
            ),
        }
    }
    for (key, reason) in [
        ("log.fields", "wharf adds no fixed fields to its log lines"),
        (
            "log.hooks",
            "wharf sends no mail on errors; alert on /metrics or the logs",
        ),
        (
            "log.accesslog",
            "wharf always writes an access line per request",
        ),
        ("log.reportcaller", "wharf logs no caller locations"),
    ] {
        if root.take(key).is_some() {
            d.unmapped(key, reason);
        }
    }
}
