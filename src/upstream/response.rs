//! Reading what an upstream answered: its `Retry-After`, transport failures, and
//! small bodies read under a cap whether or not they announce a length.

use bytes::Bytes;
use http::{HeaderMap, header};

use super::error::UpstreamError;

/// A 429's `Retry-After` in seconds (the HTTP-date form is ignored).
pub(super) fn retry_after(h: &HeaderMap) -> Option<u64> {
    h.get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A failed exchange: the upstream is unavailable.
pub(super) fn transport(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unavailable(e.to_string())
}

/// Reads a small response body (manifest, tag list, index), refusing one
/// larger than `max` whether or not it announced its length: a broken or
/// hostile upstream cannot make wharf buffer without bound.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Bytes, UpstreamError> {
    let too_big = || UpstreamError::Invalid(format!("{what} larger than {} MiB", max >> 20));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
