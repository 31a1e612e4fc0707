//! `POST /_wharf/v1/gc` `{"dry_run":false}` (body optional): what `wharf gc
//! [--dry-run]` does — one collection now, run as a pass of the gc worker (it
//! waits for a scheduled pass that is running, never runs beside one, and
//! `status` shows it), answered with its report.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::request::optional_json_body;
use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GcRequest {
    /// Report what would go, remove nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Runs one collection and answers its [`crate::workers::gc::GcReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let GcRequest { dry_run } = optional_json_body(state, req).await?.unwrap_or_default();
    let report = state
        .lifecycle
        .gc
        .run_detached(move |gc| async move { gc.pass(dry_run).await })
        .await?;
    tracing::info!(
        dry_run,
        blobs = report.swept_blobs,
        bytes = report.swept_bytes,
        "gc run through the admin API"
    );
    Ok(json(StatusCode::OK, &report))
}
