//! What a sync pass reports, per rule: what `wharf sync` prints and the
//! `sync_state` table keeps as each rule's last pass.

use serde::{Deserialize, Serialize};

/// Error messages a rule's report keeps; the count covers all of them.
pub const MAX_MESSAGES: usize = 5;

/// One rule's pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule's image as configured.
    pub image: String,
    /// Its tag globs.
    pub tags: Vec<String>,
    /// Tags the upstream listed.
    pub tags_seen: u64,
    /// Tags the globs matched (and the pass went through).
    pub matched: u64,
    /// More tags matched than a pass takes (or pages were left unread).
    pub truncated: bool,
    /// Tags unchanged upstream with everything here: one HEAD each.
    pub unchanged: u64,
    /// Tags that moved or lacked content, brought up to date.
    pub fetched: u64,
    /// Blob bytes downloaded.
    pub bytes_fetched: u64,
    /// Tags left as they were because the pass paused.
    pub skipped: u64,
    /// Tags that failed.
    pub errors: u64,
    /// The first few failures (`tag: message`).
    pub error_messages: Vec<String>,
    /// Why the rule stopped fetching (the upstream's pull limit), if it did.
    pub paused: Option<String>,
    /// The tag list failed: nothing else was done.
    pub failed: Option<String>,
    /// Milliseconds the rule's pass took.
    pub duration_ms: u64,
    /// Unix seconds the pass started.
    pub last_run: u64,
    /// Unix seconds the rule is next due.
    pub next_run: u64,
}

impl RuleReport {
    /// Counts a failed tag, keeping its message among the first few.
    pub fn error(&mut self, tag: &str, message: String) {
        self.errors += 1;
        if self.error_messages.len() < MAX_MESSAGES {
            self.error_messages.push(format!("{tag}: {message}"));
        }
    }
}

/// One sync pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Rules that ran (were due, or all of them for `--now`).
    pub rules: Vec<RuleReport>,
    /// Rules not due yet.
    pub not_due: u64,
}

/// One configured rule and its last pass: what `GET /_wharf/v1/sync` lists.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// The rule's image as configured.
    pub image: String,
    /// Its local (mirrored) name.
    pub local: String,
    /// Its tag globs.
    pub tags: Vec<String>,
    /// Platforms kept of an index (empty: all).
    pub platforms: Vec<String>,
    /// Seconds between passes.
    pub every_seconds: u64,
    /// Unix seconds the rule last ran.
    pub last_run: Option<u64>,
    /// Unix seconds it is next due.
    pub next_run: Option<u64>,
    /// Its last pass.
    pub last: Option<serde_json::Value>,
}
