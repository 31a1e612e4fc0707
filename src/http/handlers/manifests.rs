//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`. Stored bytes are
//! served exactly as pushed: the digest a client pushed is the digest it pulls.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{merged, read_small, respond};
use crate::http::body::{Body, empty, full};
use crate::http::{ApiError, Ctx, State};
use crate::oci::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST,
};
use crate::oci::{Reference, RepoName};
use crate::store::StoreError;

/// Whether a client's `Accept` list admits `media_type`. No header, a wildcard,
/// or a list naming none of the manifest types (old clients) all admit anything.
pub fn accepts(accept: &str, media_type: &str) -> bool {
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .collect();
    let knows_manifests = types.iter().any(|t| {
        [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(t)
    });
    !knows_manifests
        || types
            .iter()
            .any(|t| *t == media_type || *t == "*/*" || *t == "application/*")
}

/// `GET` or `HEAD` a manifest, from the request's
/// [`Source`](crate::proxy::Source) (for a mirrored name: the cache, within
/// the tag's TTL, revalidated or stale otherwise).
pub async fn get(
    ctx: &Ctx,
    reference: &Reference,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let source = ctx.source()?;
    let (info, cache) = source.manifest(reference).await?;
    let accept = merged(req.headers(), header::ACCEPT);
    if !accepts(&accept, &info.media_type) {
        return Err(StoreError::ManifestUnknown(format!(
            "{reference} exists as {} but the request's Accept header does not allow that type",
            info.media_type
        ))
        .into());
    }
    let mut headers = vec![
        (header::CONTENT_TYPE, info.media_type.clone()),
        (header::CONTENT_LENGTH, info.size.to_string()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            info.digest.to_string(),
        ),
        (header::ETAG, format!("\"{}\"", info.digest)),
    ];
    if let Some(c) = cache {
        headers.push(super::x_cache(c));
    }
    if ctx.method == http::Method::HEAD {
        return Ok(respond(StatusCode::OK, headers, empty()));
    }
    let bytes = source.manifest_bytes(&info).await?;
    Ok(respond(StatusCode::OK, headers, full(bytes)))
}

/// `PUT` a manifest by tag or digest.
pub async fn put(
    state: &State,
    name: &RepoName,
    reference: &Reference,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(ApiError::ManifestTooLarge);
    }
    let body = read_small(state, req.into_body(), MAX_MANIFEST_BYTES)
        .await?
        .ok_or(ApiError::ManifestTooLarge)?;
    let out = state
        .store
        .put_manifest(name, reference, body, &content_type)
        .await?;
    let mut headers = vec![
        (
            header::LOCATION,
            state.location(&format!("/v2/{name}/manifests/{}", out.digest)),
        ),
        (
            header::HeaderName::from_static("docker-content-digest"),
            out.digest.to_string(),
        ),
    ];
    if let Some(s) = out.subject {
        headers.push((
            header::HeaderName::from_static("oci-subject"),
            s.to_string(),
        ));
    }
    Ok(respond(StatusCode::CREATED, headers, empty()))
}

/// `DELETE` a manifest (by digest) or a tag (by tag).
pub async fn delete(
    state: &State,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response<Body>, ApiError> {
    state.store.delete_manifest(name, reference).await?;
    Ok(respond(StatusCode::ACCEPTED, vec![], empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_rules() {
        assert!(accepts("", OCI_INDEX));
        assert!(accepts("application/json", OCI_INDEX));
        assert!(accepts(&format!("{DOCKER_MANIFEST}, */*"), OCI_INDEX));
        assert!(accepts(
            &format!("{OCI_MANIFEST};q=0.9,{OCI_INDEX}"),
            OCI_INDEX
        ));
        assert!(!accepts(DOCKER_MANIFEST, OCI_INDEX));
    }
}
