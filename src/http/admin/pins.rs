//! `GET /_wharf/v1/pins`, `POST /_wharf/v1/pin` and `POST /_wharf/v1/unpin`
//! `{"reference":"docker.io/library/nginx:1.27"}`: what `wharf pin [REF]` and
//! `wharf unpin REF` do. A pinned image (its whole closure) is never evicted
//! nor collected. The reference is written as clients write it; its name
//! resolves to the local one the way `rm` does, and answers carry the local one.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::request::json_body;
use super::{AdminError, candidates, existing_repo, json};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::routing::{Intent, Target};
use crate::oci::{ImageRef, Reference};
use crate::store::{Pin, StoreError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    reference: String,
}

/// What `pin` and `unpin` answer.
#[derive(Serialize)]
struct Pinned {
    /// The pin: `<local repo>:<tag>` or `<local repo>@<digest>`.
    reference: String,
    /// The manifest it protects (for a tag pin, what the tag named when pinned).
    digest: String,
}

/// One pin, as listed.
#[derive(Serialize)]
struct Listed {
    reference: String,
    digest: String,
    repository: String,
    tag: Option<String>,
    created: u64,
}

/// Every pin, in reference order.
pub(super) async fn list(state: &State) -> Result<Response<Body>, AdminError> {
    #[derive(Serialize)]
    struct Answer {
        pins: Vec<Listed>,
    }
    let pins = state
        .store
        .pins()
        .await?
        .into_iter()
        .map(|p| Listed {
            reference: p.reference,
            digest: p.digest,
            repository: p.repo,
            tag: p.tag,
            created: p.created,
        })
        .collect();
    Ok(json(StatusCode::OK, &Answer { pins }))
}

/// Pins the image; 404 when it is not stored here (a mirrored one must be
/// pulled through wharf first).
pub(super) async fn pin(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let image = reference(state, req).await?;
    let Some(repo) = existing_repo(state, &image.name).await? else {
        return Err(not_here(state, &image, None));
    };
    let digest = state
        .store
        .pin(&repo, &image.reference)
        .await
        .map_err(|e| match e {
            StoreError::ManifestUnknown(_) => not_here(state, &image, Some(&repo)),
            other => other.into(),
        })?;
    let reference = ImageRef {
        name: repo,
        reference: image.reference,
    }
    .to_string();
    tracing::info!(%reference, %digest, "pinned through the admin API");
    Ok(json(
        StatusCode::OK,
        &Pinned {
            reference,
            digest: digest.to_string(),
        },
    ))
}

/// Removes the pin the reference names; 404 when there is none.
pub(super) async fn unpin(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let image = reference(state, req).await?;
    let not_pinned = || {
        AdminError::NotFound(format!(
            "{image} is not pinned (`wharf pin` lists the pins)"
        ))
    };
    // A pin outlives its tag and its repository's content: look it up among
    // the pins, not the repositories.
    let names = candidates(state, &image.name);
    let pin = state
        .store
        .pins()
        .await?
        .into_iter()
        .find(|p| names.iter().any(|n| n.as_str() == p.repo) && names_it(p, &image.reference))
        .ok_or_else(not_pinned)?;
    let repo = names
        .into_iter()
        .find(|n| n.as_str() == pin.repo)
        .ok_or_else(not_pinned)?;
    if !state.store.unpin(&repo, &image.reference).await? {
        return Err(not_pinned());
    }
    tracing::info!(reference = %pin.reference, "unpinned through the admin API");
    Ok(json(
        StatusCode::OK,
        &Pinned {
            reference: pin.reference,
            digest: pin.digest,
        },
    ))
}

/// The request's reference, parsed (400 when malformed or incomplete).
async fn reference(state: &State, req: Request<Incoming>) -> Result<ImageRef, AdminError> {
    let body: PinRequest = json_body(
        state,
        req,
        r#"{"reference":"docker.io/library/nginx:1.27"}"#,
    )
    .await?;
    body.reference
        .parse()
        .map_err(|e: crate::oci::ImageRefError| AdminError::BadRequest(e.to_string()))
}

/// Whether `pin` is the pin of `reference` (a tag pin by its tag, a digest
/// pin by its digest).
fn names_it(pin: &Pin, reference: &Reference) -> bool {
    match reference {
        Reference::Tag(t) => pin.tag.as_deref() == Some(t.as_str()),
        Reference::Digest(d) => pin.tag.is_none() && pin.digest == d.to_string(),
    }
}

/// The 404 for an image that is not stored here: a mirrored one has to be
/// pulled first; a hosted one names what is missing.
fn not_here(state: &State, image: &ImageRef, repo: Option<&crate::oci::RepoName>) -> AdminError {
    let mirrored = matches!(
        state.resolve(&image.name, None, Intent::Read),
        Ok(Target::Proxied(_))
    );
    AdminError::NotFound(match (mirrored, repo) {
        (true, _) => format!(
            "{image} is not cached here: pull it through wharf first (docker pull, skopeo copy), then pin it"
        ),
        (false, None) => format!("repository {} is unknown", image.name),
        (false, Some(repo)) => match &image.reference {
            Reference::Tag(t) => format!("{repo} has no tag {t}"),
            Reference::Digest(d) => format!("{repo} has no manifest {d}"),
        },
    })
}
