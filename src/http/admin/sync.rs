//! `GET /_wharf/v1/sync`: every `[[sync]]` rule and its last pass (what
//! `wharf sync` prints); `POST /_wharf/v1/sync`: every rule now, as a pass of
//! the sync worker (what `wharf sync --now` runs), answered with its report.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::request::no_options;
use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

#[derive(serde::Serialize)]
struct Rules {
    /// The sync worker's state (running, last result, next run).
    worker: crate::workers::Status,
    rules: Vec<crate::workers::sync::RuleStatus>,
}

/// The rules and their last passes.
pub(super) async fn list(state: &State) -> Result<Response<Body>, AdminError> {
    let rules = state.sync.worker.rules().await?;
    Ok(json(
        StatusCode::OK,
        &Rules {
            worker: state.sync.control.status(),
            rules,
        },
    ))
}

/// Runs every rule now and answers the [`crate::workers::sync::SyncReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    no_options(state, req).await?;
    let report = state
        .sync
        .run_detached(|s| async move { s.pass(true).await })
        .await?;
    tracing::info!(rules = report.rules.len(), "sync run through the admin API");
    Ok(json(StatusCode::OK, &report))
}
