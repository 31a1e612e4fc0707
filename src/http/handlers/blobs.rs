//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::respond;
use crate::http::body::{Body, ChannelBody, ReaderBody, blob, empty};
use crate::http::zero_copy::{SpanBody, Spans};
use crate::http::{ApiError, Ctx, State};
use crate::oci::{Digest, RepoName};
use crate::proxy::BlobBody;
use crate::proxy::inflight::reader;
use crate::store::BlobReader;

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

/// How long a presigned blob URL (`[storage.s3] redirect`) stays valid: long
/// enough for a slow client to start a large layer, short enough that a
/// leaked URL soon stops working (Distribution's S3 driver uses 20 minutes).
const REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// `GET` or `HEAD` a blob, from the request's [`Source`](crate::proxy::Source):
/// the store, or for a mirrored name the cache in front of the upstream (a
/// miss streams while it downloads; ranges work on it too; a HEAD asks the
/// upstream without downloading).
pub async fn get(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    digest: &Digest,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let head = ctx.method == http::Method::HEAD;
    let source = ctx.source()?;
    let (size, body, cache) = if head {
        let (size, cache) = match source.blob_head(digest).await {
            Ok(found) => found,
            Err(e) if e.is_outage() && may_push(state, ctx, name) => {
                // A pusher checks each blob before its upload, which this
                // name will refuse with advice (DENIED, naming [hosted]
                // prefixes). An upstream outage must not hide that advice
                // behind a 503: say "not here", and the upload says why.
                return Err(crate::store::StoreError::BlobUnknown(digest.clone()).into());
            }
            Err(e) => return Err(e.into()),
        };
        (size, None, cache)
    } else {
        let b = source.blob(digest, ctx.client.limit_key()).await?;
        (b.size, Some(b.body), b.cache)
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
    let Some(body) = body else {
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
    let body = match body {
        BlobBody::Local(reader) if state.blob_redirect => {
            match state.store.blob_redirect(digest, REDIRECT_TTL).await? {
                Some(url) => {
                    let h = vec![
                        (header::LOCATION, url),
                        (
                            header::HeaderName::from_static("docker-content-digest"),
                            digest.to_string(),
                        ),
                        (header::CONTENT_LENGTH, "0".to_owned()),
                    ];
                    return Ok(respond(StatusCode::TEMPORARY_REDIRECT, h, empty()));
                }
                None => local_body(state, req, reader, start, end),
            }
        }
        BlobBody::Local(reader) => local_body(state, req, reader, start, end),
        BlobBody::Streaming(dl) => ChannelBody::new(reader(dl, start, end), end - start).boxed(),
    };
    Ok(respond(status, h, body))
}

/// A stored blob's bytes `start..end`: sent from the file without a copy on
/// a plain-TCP HTTP/1 connection where the backend allows it, read and
/// streamed otherwise (TLS, HTTP/2, backends without local files).
fn local_body(
    state: &State,
    req: &Request<Incoming>,
    reader: BlobReader,
    start: u64,
    end: u64,
) -> Body {
    let spans = req
        .extensions()
        .get::<Spans>()
        .filter(|_| req.version() <= http::Version::HTTP_11);
    match spans {
        Some(spans) => match SpanBody::new(reader, spans.clone(), start, end) {
            Ok(body) => {
                state.metrics.blob_zero_copy_bytes.inc_by(end - start);
                body.boxed()
            }
            Err(reader) => blob(ReaderBody::new(reader, start, end)),
        },
        None => blob(ReaderBody::new(reader, start, end)),
    }
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
