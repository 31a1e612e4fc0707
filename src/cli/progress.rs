//! Progress for long admin calls (gc, verify): while the POST runs, `GET
//! /_wharf/v1/status` every 250 ms and draw the worker's `progress: [done,
//! total]` as a bar (a spinner while it has none). Only on a terminal (stderr)
//! and never with `--json`: scripts get the answer and nothing else.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::{CliError, Client, Reply};

/// How often the status is polled while a long call runs.
const POLL: Duration = Duration::from_millis(250);

/// POSTs `body` to `path` and returns the answer; meanwhile shows the progress
/// of `worker` on a terminal.
pub(super) fn post_with_progress(
    c: &Client,
    worker: &str,
    label: &str,
    path: &str,
    body: &Value,
) -> Result<Reply, CliError> {
    if c.json || !std::io::stderr().is_terminal() {
        return c.post(path, body);
    }
    c.block_on(async {
        let bar = ProgressBar::new_spinner();
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        let mut counting = false;
        let post = c.post_async(path, body);
        let mut post = std::pin::pin!(post);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = &mut post => {
                    bar.finish_and_clear();
                    return r;
                }
                _ = tick.tick() => {
                    let status = tokio::time::timeout(POLL * 4, c.get_async("status")).await;
                    if let Ok(Ok(s)) = status {
                        counting = update(&bar, &s, worker, counting);
                    }
                }
            }
        }
    })
}

/// Draws `worker`'s progress from a status answer; returns whether the bar now
/// counts (rather than spins).
fn update(bar: &ProgressBar, status: &Value, worker: &str, counting: bool) -> bool {
    let w = status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == worker);
    let progress = w
        .and_then(|w| w["progress"].as_array())
        .and_then(|p| Some((p.first()?.as_u64()?, p.get(1)?.as_u64()?)));
    match progress {
        Some((done, total)) if total > 0 => {
            if !counting {
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:40}] {pos}/{len} ({elapsed}, {eta} left)",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
            }
            bar.set_length(total);
            bar.set_position(done.min(total));
            true
        }
        _ => counting,
    }
}
