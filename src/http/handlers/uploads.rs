//! Blob uploads: monolithic (POST then PUT), single POST with `?digest=`, chunked
//! PATCHes with `Content-Range`, status, cancel, and cross-repository mount.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{blob_created, digest_param, respond, stream_into, upload_slot};
use crate::http::body::{Body, empty};
use crate::http::query::Query;
use crate::http::{ApiError, Ctx, State, range_header};
use crate::oci::RepoName;
use crate::store::StoreError;

fn session_headers(
    state: &State,
    name: &RepoName,
    id: &str,
    len: u64,
) -> Vec<(header::HeaderName, String)> {
    vec![
        (
            header::LOCATION,
            state.location(&format!("/v2/{name}/blobs/uploads/{id}")),
        ),
        (header::RANGE, range_header(len)),
        (
            header::HeaderName::from_static("docker-upload-uuid"),
            id.to_owned(),
        ),
    ]
}

/// `POST /v2/<name>/blobs/uploads/`: mount, single-POST upload, or a new session.
pub async fn start(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query());
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let digest = digest_param(Some(mount))?;
        // A `from` that is not a valid name, or that the caller may not pull from,
        // cannot lend the blob: fall back to an ordinary upload (no leak, no error).
        // Rules and tokens are both checked against the local name.
        let from = from
            .parse::<RepoName>()
            .ok()
            .and_then(|asked| state.local_name(&asked))
            .filter(|local| {
                state
                    .auth
                    .allows(&ctx.caller, local.as_str(), crate::config::Action::Pull)
            });
        if let Some(from) = from {
            if state.store.mount_blob(name, &from, &digest).await? {
                return Ok(blob_created(state, name, &digest));
            }
        }
    } else if let Some(d) = q.get("digest") {
        let digest = digest_param(Some(d))?;
        let _slot = upload_slot(state, ctx)?;
        let mut writer = state.store.new_writer().await?;
        stream_into(state, req.into_body(), &mut writer).await?;
        let (digest, _) = state
            .store
            .store_blob(writer, name, &digest, crate::store::Origin::Pushed)
            .await?;
        return Ok(blob_created(state, name, &digest));
    }
    let id = state
        .store
        .begin_upload(name, ctx.client.limit_key())
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        session_headers(state, name, &id, 0),
        empty(),
    ))
}

/// Parses a chunk's `Content-Range` value: `start-end`, as the spec writes it,
/// also with the `bytes ` / `bytes=` unit some clients put first and a `/total`
/// or `/*` after. Nothing else: no spaces inside, digits only.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let s = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let (range, total) = match s.split_once('/') {
        Some((r, t)) => (r, Some(t)),
        None => (s, None),
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 20 && x.bytes().all(|b| b.is_ascii_digit());
    if total.is_some_and(|t| t != "*" && !digits(t)) {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    (a <= b).then_some((a, b))
}

/// The `Content-Range` of a chunk, if it has one; a malformed one is refused.
fn chunk_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = req.headers().get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(parse_content_range)
        .map(Some)
        .ok_or_else(|| {
            ApiError::Invalid(
                crate::oci::ErrorCode::BlobUploadInvalid,
                "malformed Content-Range: expected \"start-end\" in bytes".into(),
            )
        })
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Appends the request body to the session after checking its Content-Range.
async fn append(
    state: &State,
    name: &RepoName,
    id: &str,
    session: &mut crate::store::UploadSession,
    req: Request<Incoming>,
) -> Result<u64, ApiError> {
    let range = chunk_range(&req)?;
    let declared = content_length(&req);
    let writer = session.writer.as_mut().ok_or(StoreError::UploadUnknown)?;
    let offset = writer.len();
    if let Some((start, end)) = range {
        if let Some(n) = declared.filter(|n| *n != end - start + 1) {
            return Err(StoreError::SizeInvalid(format!(
                "Content-Range {start}-{end} is {} bytes but Content-Length is {n}",
                end - start + 1
            ))
            .into());
        }
        if start != offset {
            return Err(ApiError::ChunkRange {
                offset,
                location: state.location(&format!("/v2/{name}/blobs/uploads/{id}")),
            });
        }
    }
    let result = stream_into(state, req.into_body(), writer).await;
    session.touched = std::time::Instant::now();
    result?;
    Ok(session.writer.as_ref().map(|w| w.len()).unwrap_or(0))
}

/// `PATCH`: appends a chunk.
pub async fn patch(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let _slot = upload_slot(state, ctx)?;
    let handle = state.store.upload(name, id)?;
    let mut session = handle.lock().await;
    let appended = append(state, name, id, &mut session, req).await;
    // Between requests a session holds no open file (its hash stays in memory).
    let parked = session.park().await;
    let len = appended?;
    parked?;
    Ok(respond(
        StatusCode::ACCEPTED,
        session_headers(state, name, id, len),
        empty(),
    ))
}

/// `PUT ?digest=`: appends an optional last chunk and completes the upload.
pub async fn finish(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let _slot = upload_slot(state, ctx)?;
    let q = Query::parse(req.uri().query());
    let digest = digest_param(q.get("digest"))?;
    let handle = state.store.upload(name, id)?;
    let mut session = handle.lock().await;
    if let Err(e) = append(state, name, id, &mut session, req).await {
        // The session stays open for a retry, without an open file; a failed
        // park is reported by the session's next write.
        let _ = session.park().await;
        return Err(e);
    }
    state.store.finish_upload(id, &mut session, &digest).await?;
    Ok(blob_created(state, name, &digest))
}

/// `GET`: where the upload stands.
pub async fn status(state: &State, name: &RepoName, id: &str) -> Result<Response<Body>, ApiError> {
    let handle = state.store.upload(name, id)?;
    let session = handle.lock().await;
    let len = session
        .writer
        .as_ref()
        .ok_or(StoreError::UploadUnknown)?
        .len();
    Ok(respond(
        StatusCode::NO_CONTENT,
        session_headers(state, name, id, len),
        empty(),
    ))
}

/// `DELETE`: abandons the upload.
pub async fn cancel(state: &State, name: &RepoName, id: &str) -> Result<Response<Body>, ApiError> {
    state.store.cancel_upload(name, id).await?;
    Ok(respond(StatusCode::NO_CONTENT, vec![], empty()))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range as p;

    #[test]
    fn content_ranges() {
        assert_eq!(p("0-65535"), Some((0, 65535)));
        assert_eq!(p("bytes=10-19"), Some((10, 19)));
        assert_eq!(p("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(p("10-19/*"), Some((10, 19)));
        for bad in [
            "0 - 9", " 0-9", "0-9 ", "-9", "0-", "9-0", "a-b", "0-9/x", "0-9/", "", "-", "+1-2",
            "0x1-2", "1-2-3",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
