//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`. Stored bytes are
//! served exactly as pushed: the digest a client pushed is the digest it pulls.

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{read_small, respond};
use crate::http::body::{Body, empty, full};
use crate::http::{ApiError, Ctx, State};
use crate::oci::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST,
};
use crate::oci::{Reference, RepoName};
use crate::store::StoreError;

/// Whether a client's `Accept` lines admit `media_type` (dockerd sends
/// `Accept` as several lines: they count as one list, without joining them).
/// No header, a wildcard, or a list naming none of the manifest types (old
/// clients) all admit anything.
fn accepts_any<'a>(lines: impl IntoIterator<Item = &'a str>, media_type: &str) -> bool {
    let mut knows_manifests = false;
    let types = lines
        .into_iter()
        .flat_map(|l| l.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim());
    for t in types {
        if t == media_type || t == "*/*" || t == "application/*" {
            return true;
        }
        knows_manifests |= [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&t);
    }
    !knows_manifests
}

/// A header value from an owned string, without copying it (a value that
/// is not a valid header value is left out, as `respond` does).
fn owned_value(s: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
}

/// The `Content-Type` of a manifest: the well-known types without an
/// allocation.
fn media_type_value(media_type: &str) -> Option<HeaderValue> {
    for known in [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ] {
        if media_type == known {
            return Some(HeaderValue::from_static(known));
        }
    }
    owned_value(media_type.to_owned())
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
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !accepts_any(accept, &info.media_type) {
        return Err(StoreError::ManifestUnknown(format!(
            "{reference} exists as {} but the request's Accept header does not allow that type",
            info.media_type
        ))
        .into());
    }
    let body = if ctx.method == http::Method::HEAD {
        empty()
    } else {
        full(source.manifest_bytes(&info).await?)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    if let Some(v) = media_type_value(&info.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    // Built at their exact length: `Bytes` then takes them without another
    // allocation.
    let hex = info.digest.hex();
    let mut etag = String::with_capacity(hex.len() + 9);
    etag.push_str("\"sha256:");
    etag.push_str(hex);
    etag.push('"');
    let digest = etag[1..etag.len() - 1].to_owned();
    if let Some(v) = owned_value(etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = owned_value(digest) {
        h.insert(HeaderName::from_static("docker-content-digest"), v);
    }
    if let Some(c) = cache {
        h.insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_static(c.as_str()),
        );
    }
    Ok(resp)
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

    fn accepts(accept: &str, media_type: &str) -> bool {
        accepts_any([accept], media_type)
    }

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
        // dockerd's several lines count as one list.
        assert!(accepts_any([DOCKER_MANIFEST, OCI_INDEX], OCI_INDEX));
        assert!(!accepts_any(
            [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST],
            OCI_INDEX
        ));
    }
}
