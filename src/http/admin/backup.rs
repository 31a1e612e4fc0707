//! `POST /_wharf/v1/backup` `{"dest":"/abs/path","copy":false}`: what `wharf
//! backup DEST` does — an online, consistent copy of the data directory into
//! `dest` (absent or empty; refused otherwise with 409), run as a pass of the
//! backup worker (its progress is in `status` while it runs), answered with
//! its report.

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
struct BackupRequest {
    /// The backup directory, absolute, on the daemon's host.
    dest: PathBuf,
    /// Copy content even where it could be hard-linked.
    #[serde(default)]
    copy: bool,
}

/// Runs one backup and answers its [`crate::workers::backup::BackupReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let BackupRequest { dest, copy } =
        json_body(state, req, r#"{"dest":"/var/backups/wharf-2024-06-01"}"#).await?;
    if !dest.is_absolute() {
        return Err(AdminError::BadRequest(format!(
            "dest must be an absolute path on the daemon's host, not {}",
            dest.display()
        )));
    }
    let report = state
        .lifecycle
        .backup
        .run_detached(move |b| async move { b.pass(dest, copy).await })
        .await?;
    Ok(json(StatusCode::OK, &report))
}
