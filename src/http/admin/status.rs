//! `GET /_wharf/v1/status`: what `wharf status` shows — version, uptime, and
//! every worker's last run, next run, result and progress.

use http::{Response, StatusCode};

use super::json;
use crate::http::State;
use crate::http::body::Body;

#[derive(serde::Serialize)]
struct Answer {
    version: &'static str,
    uptime_seconds: u64,
    workers: Vec<crate::workers::Status>,
}

/// The daemon's status.
pub(super) fn show(state: &State) -> Response<Body> {
    json(
        StatusCode::OK,
        &Answer {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: state.started.elapsed().as_secs(),
            workers: state.workers.statuses(),
        },
    )
}
