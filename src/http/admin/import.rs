//! `POST /_wharf/v1/import` `{"dir":"/var/lib/registry","link":false}`: what
//! `wharf import DIR [--link]` does — imports a `registry:2` storage root as
//! a pass of the import worker (its progress, tags done of all, is in
//! `status` while it runs), answered with its report. `dir` is a path on the
//! daemon's machine; a directory that is not a storage root is a 400.

use std::path::PathBuf;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::request::json_body;
use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    /// The storage root (absolute: the daemon's working directory is not the caller's).
    dir: PathBuf,
    /// Hard-link blob files where possible instead of copying them.
    #[serde(default)]
    link: bool,
}

/// Runs one import and answers its [`crate::workers::import::ImportReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let ImportRequest { dir, link } =
        json_body(state, req, r#"{"dir":"/var/lib/registry","link":false}"#).await?;
    if !dir.is_absolute() {
        return Err(AdminError::BadRequest(format!(
            "dir must be an absolute path on the daemon's machine, not {}",
            dir.display()
        )));
    }
    let report = state
        .lifecycle
        .import
        .run_detached(move |i| async move { i.pass(dir, link).await })
        .await?;
    tracing::info!(
        tags = report.tags,
        blobs = report.blobs_copied + report.blobs_linked,
        bytes = report.bytes,
        "import run through the admin API"
    );
    Ok(json(StatusCode::OK, &report))
}
