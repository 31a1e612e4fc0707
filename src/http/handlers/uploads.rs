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
        // Tokens grant the names clients asked for; the store knows local names.
        let from = from.parse::<RepoName>().ok().and_then(|asked| {
            let local = state.local_name(&asked);
            let checked = match ctx.caller.identity {
                crate::auth::Identity::Token(_) => &asked,
                _ => &local,
            };
            state
                .auth
                .allows(&ctx.caller, checked.as_str(), crate::config::Action::Pull)
                .then_some(local)
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
        let (digest, size) = writer.commit(Some(&digest)).await?;
        state
            .store
            .record_blob(name, &digest, size, crate::store::Origin::Pushed)
            .await?;
        return Ok(blob_created(state, name, &digest));
    }
    let id = state
        .store
        .begin_upload(name, ctx.remote.ip().to_canonical())
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        session_headers(state, name, &id, 0),
        empty(),
    ))
}

/// Parses `Content-Range` of a chunk: `start-end`, also with `bytes ` or `bytes=`.
fn chunk_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = req.headers().get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::Invalid(
            crate::oci::ErrorCode::BlobUploadInvalid,
            "malformed Content-Range".into(),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse::<u64>().map_err(|_| bad())?,
        b.trim().parse::<u64>().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
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
