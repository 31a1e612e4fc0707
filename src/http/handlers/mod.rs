//! One file per resource; `dispatch` is the single `match` from route to handler.

mod base;
mod blobs;
mod listing;
mod manifests;
mod token;
mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub use blobs::{ByteRange, parse_range};
pub use uploads::parse_content_range;

use super::body::{Body, empty};
use super::{ApiError, Ctx, Route, State};
use crate::oci::Digest;
use crate::store::BlobWriter;

/// Runs the handler for `route`.
pub async fn dispatch(
    state: &Arc<State>,
    ctx: &Ctx,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // Each handler's future is boxed: inline, the largest of them would set
    // the size of every request's future, and hyper moves that future
    // (kilobytes of memcpy per request, measured) before polling it.
    match route {
        Route::Base => Ok(base::version_check()),
        Route::Health => Ok(base::health()),
        Route::Ready => Box::pin(base::ready(state)).await,
        Route::Metrics => Ok(base::metrics(state).await),
        Route::Catalog => Box::pin(listing::catalog(state, ctx, &req)).await,
        Route::Token => Box::pin(token::issue(state, ctx, req)).await,
        Route::Tags { name } => Box::pin(listing::tags(state, ctx, &name, &req)).await,
        Route::Referrers { digest, .. } => Box::pin(listing::referrers(ctx, &digest, &req)).await,
        Route::Manifest { name, reference } => match ctx.method {
            Method::PUT => Box::pin(manifests::put(state, &name, &reference, req)).await,
            Method::DELETE => Box::pin(manifests::delete(state, &name, &reference)).await,
            _ => Box::pin(manifests::get(ctx, &reference, &req)).await,
        },
        Route::Blob { name, digest } => match ctx.method {
            Method::DELETE => Box::pin(blobs::delete(state, &name, &digest)).await,
            _ => Box::pin(blobs::get(state, ctx, &name, &digest, &req)).await,
        },
        Route::UploadStart { name } => Box::pin(uploads::start(state, ctx, &name, req)).await,
        Route::Upload { name, id } => match ctx.method {
            Method::PATCH => Box::pin(uploads::patch(state, ctx, &name, &id, req)).await,
            Method::PUT => Box::pin(uploads::finish(state, ctx, &name, &id, req)).await,
            Method::DELETE => Box::pin(uploads::cancel(state, &name, &id)).await,
            _ => Box::pin(uploads::status(state, &name, &id)).await,
        },
    }
}

/// A response with a status, headers and body; Content-Length is set when known.
fn respond(
    status: StatusCode,
    headers: Vec<(header::HeaderName, String)>,
    body: Body,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if !h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    }
    resp
}

/// `201 Created` pointing at a blob, the answer to every completed blob upload.
/// The `X-Cache` header saying where a mirrored response came from.
fn x_cache(cache: crate::proxy::CacheResult) -> (header::HeaderName, String) {
    (
        header::HeaderName::from_static("x-cache"),
        cache.as_str().to_owned(),
    )
}

fn blob_created(state: &State, name: &crate::oci::RepoName, digest: &Digest) -> Response<Body> {
    respond(
        StatusCode::CREATED,
        vec![
            (
                header::LOCATION,
                state.location(&format!("/v2/{name}/blobs/{digest}")),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
        ],
        empty(),
    )
}

/// Streams a request body into `writer`, returning how many bytes came.
async fn stream_into(
    state: &State,
    body: Incoming,
    writer: &mut BlobWriter,
) -> Result<u64, ApiError> {
    let mut body = body;
    let mut n = 0u64;
    while let Some(frame) = next_frame(state, &mut body).await? {
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            state.metrics.upload_bytes.inc_by(data.len() as u64);
            writer.write(data).await?;
        }
    }
    Ok(n)
}

/// Reads a small body whole, refusing more than `limit` bytes (`None`).
pub(in crate::http) async fn read_small(
    state: &State,
    body: Incoming,
    limit: usize,
) -> Result<Option<Bytes>, ApiError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = next_frame(state, &mut body).await? {
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf.freeze()))
}

/// The next frame of a request body, or an error if the client stalls longer
/// than `[server] body_timeout` (slowloris on the body).
async fn next_frame(
    state: &State,
    body: &mut Incoming,
) -> Result<Option<http_body::Frame<Bytes>>, ApiError> {
    match tokio::time::timeout(state.body_timeout, body.frame()).await {
        Err(_) => Err(ApiError::BodyRead(format!(
            "no data for {}s",
            state.body_timeout.as_secs()
        ))),
        Ok(None) => Ok(None),
        Ok(Some(f)) => f.map(Some).map_err(|e| ApiError::BodyRead(e.to_string())),
    }
}

/// Takes an upload slot for the client, or refuses with 429.
fn upload_slot(state: &State, ctx: &Ctx) -> Result<crate::limits::SlotGuard, ApiError> {
    state
        .upload_slots
        .acquire(ctx.client.limit_key())
        .map_err(|_| ApiError::TooManyRequests {
            retry_after: 1,
            message: "too many concurrent uploads from this address".into(),
        })
}

/// Parses the `digest` query parameter.
fn digest_param(v: Option<&str>) -> Result<Digest, ApiError> {
    let v =
        v.ok_or_else(|| ApiError::DigestParam("the digest query parameter is required".into()))?;
    v.parse()
        .map_err(|e: crate::oci::DigestError| ApiError::DigestParam(e.to_string()))
}
