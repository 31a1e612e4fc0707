//! The one stylesheet, embedded in the binary (no files to install, no
//! build step).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::{Body, full};

/// `templates/ui/wharf.css`.
const CSS: &str = include_str!("../../../templates/ui/wharf.css");

/// `GET /ui/static/wharf.css`.
pub fn stylesheet() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(CSS.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(CSS.len()));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
