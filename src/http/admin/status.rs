//! `GET /_wharf/v1/status`: what `wharf status` shows — version, build
//! (commit, date, profile), uptime, and every worker's last run, next run,
//! result and progress.

use http::{Response, StatusCode};

use super::json;
use crate::http::State;
use crate::http::body::Body;

#[derive(serde::Serialize)]
struct Answer {
    version: &'static str,
    build: crate::build_info::Build,
    uptime_seconds: u64,
    /// Unix seconds of the start (uptime as a point in time).
    started_at: u64,
    workers: Vec<crate::workers::Status>,
}

/// The daemon's status.
pub(super) fn show(state: &State) -> Response<Body> {
    let uptime = state.started.elapsed().as_secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json(
        StatusCode::OK,
        &Answer {
            version: crate::build_info::VERSION,
            build: crate::build_info::build(),
            uptime_seconds: uptime,
            started_at: now.saturating_sub(uptime),
            workers: state.workers.statuses(),
        },
    )
}
