//! `GET /_wharf/v1/replicate` (what `wharf replicate` shows: each target's
//! queue length, last success, last error) and `POST /_wharf/v1/replicate`
//! (`wharf replicate --now`: one pass now, both sides compared, answered
//! with its report).

use http::{Response, StatusCode};

use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

fn worker(
    state: &State,
) -> Result<&crate::workers::Handle<crate::workers::replicate::Replicate>, AdminError> {
    state
        .replicate
        .as_ref()
        .ok_or_else(|| AdminError::NotFound("no [[replicate]] rules are configured".into()))
}

/// Each target's state.
pub(super) async fn show(state: &State) -> Result<Response<Body>, AdminError> {
    let targets = match &state.replicate {
        Some(h) => h.worker.status().await?,
        None => Vec::new(),
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "targets": targets }),
    ))
}

/// One pass now.
pub(super) async fn run(state: &State) -> Result<Response<Body>, AdminError> {
    let report = worker(state)?
        .run_detached(|w| async move { w.pass(true).await })
        .await?;
    Ok(json(StatusCode::OK, &report))
}
