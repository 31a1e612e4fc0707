//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::respond;
use crate::http::body::{Body, ChannelBody, FileBody, empty};
use crate::http::{ApiError, Ctx, State};
use crate::oci::{Digest, RepoName};
use crate::proxy::BlobBody;
use crate::proxy::inflight::reader;

/// A parsed single `Range: bytes=a-b` request, resolved against a size.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable Range header: send everything.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
}

/// Resolves a Range header for a blob of `size` bytes. Multi-range and malformed
/// headers are ignored (RFC 9110 allows serving the whole body); a syntactically
/// valid but unsatisfiable range is an error.
pub fn parse_range(value: Option<&str>, size: u64) -> Result<ByteRange, ApiError> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(ByteRange::Whole);
    };
    if spec.contains(',') {
        return Ok(ByteRange::Whole);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(ByteRange::Whole);
    };
    let (a, b) = (a.trim(), b.trim());
    let bad = ApiError::BadRange { size };
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if a.is_empty() => {
            if suffix == 0 {
                return Err(bad);
            }
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return Ok(ByteRange::Whole),
    };
    if range.0 >= size {
        return Err(bad);
    }
    Ok(ByteRange::Part(range.0, range.1))
}

/// `GET` or `HEAD` a blob: from the store, or for a mirrored name through the
/// proxy (a miss streams while it downloads; ranges work on it too; a HEAD
/// asks the upstream without downloading).
pub async fn get(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    digest: &Digest,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let head = ctx.method == http::Method::HEAD;
    let (size, source, cache) = match &ctx.proxy {
        Some(p) if head => {
            let (size, cache) = match state
                .proxy
                .blob_head(p.upstream, name, &p.remote, digest)
                .await
            {
                Ok(found) => found,
                Err(e) if is_outage(&e) && may_push(state, ctx, name) => {
                    // A pusher checks each blob before its upload, which this
                    // name will refuse with advice (DENIED, naming [hosted]
                    // prefixes). An upstream outage must not hide that advice
                    // behind a 503: say "not here", and the upload says why.
                    return Err(crate::store::StoreError::BlobUnknown(digest.clone()).into());
                }
                Err(e) => return Err(e.into()),
            };
            (size, None, Some(cache))
        }
        Some(p) => {
            let b = state
                .proxy
                .blob(p.upstream, name, &p.remote, digest, ctx.client.limit_key())
                .await?;
            (b.size, Some(b.body), Some(b.cache))
        }
        None if head => {
            let size = state
                .store
                .blob_size(name, digest)
                .await?
                .ok_or_else(|| crate::store::StoreError::BlobUnknown(digest.clone()))?;
            (size, None, None)
        }
        None => {
            let b = state.store.open_blob(name, digest).await?;
            (b.size, Some(BlobBody::Local(b)), None)
        }
    };
    let headers = |len: u64| {
        let mut h = vec![
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
            (header::ETAG, format!("\"{digest}\"")),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::CACHE_CONTROL, "max-age=31536000".to_owned()),
        ];
        if let Some(c) = cache {
            h.push(super::x_cache(c));
        }
        h
    };
    let Some(source) = source.filter(|_| !head) else {
        return Ok(respond(StatusCode::OK, headers(size), empty()));
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, end, h) = match parse_range(range, size)? {
        ByteRange::Whole => (StatusCode::OK, 0, size, headers(size)),
        ByteRange::Part(start, last) => {
            let mut h = headers(last - start + 1);
            h.push((
                header::CONTENT_RANGE,
                format!("bytes {start}-{last}/{size}"),
            ));
            (StatusCode::PARTIAL_CONTENT, start, last + 1, h)
        }
    };
    let body = match source {
        BlobBody::Local(b) => {
            // The body owns the blob's in-use guard: eviction and gc leave the
            // digest alone until the response is done.
            let in_use = b.in_use;
            use http_body_util::BodyExt as _;
            FileBody::new(b.file, start, end)
                .map_frame(move |f| {
                    let _held = &in_use;
                    f
                })
                .boxed_unsync()
        }
        BlobBody::Streaming(dl) => ChannelBody::new(reader(dl, start, end), end - start).boxed(),
    };
    Ok(respond(status, h, body))
}

/// The upstream is down or refusing for now (not: it says the blob is absent).
fn is_outage(e: &crate::proxy::ProxyError) -> bool {
    use crate::upstream::UpstreamError as U;
    matches!(
        e,
        crate::proxy::ProxyError::Upstream(
            U::Unavailable(_) | U::CircuitOpen(_) | U::TooManyRequests { .. }
        )
    )
}

/// Whether the caller may push to the (local) name, as far as the rules go.
fn may_push(state: &State, ctx: &Ctx, local: &RepoName) -> bool {
    state
        .auth
        .allows(&ctx.caller, local.as_str(), crate::config::Action::Push)
}

/// `DELETE` a blob: unlinks it from the repository; the file goes through gc.
pub async fn delete(
    state: &State,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response<Body>, ApiError> {
    state.store.unlink_blob(name, digest).await?;
    Ok(respond(StatusCode::ACCEPTED, vec![], empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), ByteRange::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10).unwrap(),
            ByteRange::Part(0, 4)
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10).unwrap(),
            ByteRange::Part(5, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10).unwrap(),
            ByteRange::Part(7, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10).unwrap(),
            ByteRange::Part(8, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=0-1,3-4"), 10).unwrap(),
            ByteRange::Whole
        );
        assert_eq!(
            parse_range(Some("items=0-1"), 10).unwrap(),
            ByteRange::Whole
        );
        assert!(parse_range(Some("bytes=10-"), 10).is_err());
        assert!(parse_range(Some("bytes=-0"), 10).is_err());
        assert_eq!(
            parse_range(Some("bytes=5-2"), 10).unwrap(),
            ByteRange::Whole
        );
    }
}
