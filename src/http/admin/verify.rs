//! `POST /_wharf/v1/verify`: what `wharf verify` does — re-hashes every blob
//! now as a pass of the verify worker (its progress is in `status` while it
//! runs), answered with its report: every corrupt blob, quarantined, with the
//! repositories and tags it breaks.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::request::no_options;
use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;
use crate::workers::Worker;

/// Runs one verify pass and answers its [`crate::workers::verify::VerifyReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    no_options(state, req).await?;
    let report = state
        .lifecycle
        .verify
        .run_detached(|v| async move { v.run_once().await })
        .await?;
    Ok(json(StatusCode::OK, &report))
}
