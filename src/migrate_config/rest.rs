//! Whatever no mapper took: each key is listed with why wharf has no
//! equivalent, so nothing in `config.yml` is dropped silently.

use super::draft::Draft;
use super::tree::Node;

/// Reasons by key prefix (the first that matches a key wins).
const REASONS: &[(&str, &str)] = &[
    (
        "health",
        "wharf runs no periodic self-checks; point your monitor at /healthz (process up) and \
         /readyz (storage writable, index open)",
    ),
    (
        "notifications",
        "wharf sends no webhooks; [[replicate]] copies pushes to another registry, and the \
         access log and /metrics record every push and pull",
    ),
    (
        "redis",
        "not needed: wharf's index (redb) lives in its data directory, there is no external \
         cache",
    ),
    (
        "middleware",
        "no registry/storage middleware (cloudfront, redirect): put a CDN or reverse proxy in \
         front",
    ),
    (
        "reporting",
        "no bugsnag/newrelic reporting; use /metrics and the logs",
    ),
    (
        "validation",
        "no manifest validation policy to set: wharf accepts what the OCI spec allows and \
         never fetches foreign layer URLs",
    ),
    (
        "compatibility",
        "wharf does not serve schema 1 manifests, so there is nothing to sign",
    ),
    (
        "catalog",
        "wharf's /v2/_catalog pages with n and last, whatever the size",
    ),
    (
        "auth",
        "an auth method wharf does not offer; it has htpasswd users",
    ),
];

/// The format version every config.yml starts with: not a setting.
const SILENT: &[&str] = &["version"];

/// Lists every key left in `root` as unmapped.
pub(super) fn map(root: &mut Node, d: &mut Draft) {
    for key in SILENT {
        root.take(key);
    }
    let Node::Map(entries) = std::mem::replace(root, Node::Null) else {
        return;
    };
    for (top, node) in entries {
        let keys: Vec<String> = Node::Map(vec![(top.clone(), node)])
            .leaves()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let reason = REASONS
            .iter()
            .find(|(p, _)| top == *p)
            .map(|(_, r)| *r)
            .unwrap_or("not a registry:2 setting wharf knows an equivalent for");
        // A whole section goes on one line: its keys, then the reason.
        let shown = if keys.len() > 4 {
            format!("{} ({} keys)", top, keys.len())
        } else {
            keys.join(", ")
        };
        d.unmapped(&shown, reason);
    }
}
