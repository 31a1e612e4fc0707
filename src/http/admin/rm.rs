//! `POST /_wharf/v1/rm` `{"reference":"team/app:1"}`: what `wharf rm` does —
//! deletes a tag, or (by digest) a manifest with its tags. The space comes
//! back with the next gc.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::request::json_body;
use super::{AdminError, existing_repo, json};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::{ImageRef, Reference};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RmRequest {
    reference: String,
}

/// Deletes what the reference names; 404 when the repository, tag or
/// manifest is unknown.
pub(super) async fn remove(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let body: RmRequest = json_body(state, req, r#"{"reference":"team/app:1"}"#).await?;
    let image: ImageRef = body
        .reference
        .parse()
        .map_err(|e: crate::oci::ImageRefError| AdminError::BadRequest(e.to_string()))?;
    let repo = existing_repo(state, &image.name)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("repository {} is unknown", image.name)))?;
    state
        .store
        .delete_manifest(&repo, &image.reference)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::ManifestUnknown(_) => {
                AdminError::NotFound(format!("{repo} has no {}", describe(&image.reference)))
            }
            other => other.into(),
        })?;
    tracing::info!(%repo, reference = %image.reference, "deleted through the admin API");
    let (tag, digest) = match &image.reference {
        Reference::Tag(t) => (Some(t.to_string()), None),
        Reference::Digest(d) => (None, Some(d.to_string())),
    };
    Ok(json(
        StatusCode::OK,
        &Deleted {
            repository: repo.to_string(),
            tag,
            digest,
            deleted: true,
        },
    ))
}

/// The answer: what went.
#[derive(Serialize)]
struct Deleted {
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    deleted: bool,
}

fn describe(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => format!("tag {t}"),
        Reference::Digest(d) => format!("manifest {d}"),
    }
}
