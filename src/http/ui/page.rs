//! What every page's layout needs (`templates/ui/base.html`: who is logged
//! in, the CSRF field of its forms, the way back to `/ui/`), and the HTML
//! response every page and error goes out as.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::{Body, full};

/// The layout's values.
#[derive(Debug, Clone)]
pub struct Page {
    /// Relative path from the page's URL to `/ui/` (`""`, `"../"`).
    pub root: String,
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// Whether the visitor may use the admin actions.
    pub admin: bool,
    /// Whether users exist (then a login link is shown to anonymous visitors).
    pub has_users: bool,
    /// The CSRF field of this session's forms.
    pub csrf: String,
    /// The one-line result of the last action, shown once.
    pub flash: Option<String>,
    /// wharf's version, in the footer.
    pub version: &'static str,
}

/// A rendered page: `Content-Type: text/html`.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// `303 See Other` to a relative `location` (after a form POST, and for
/// pages that need a login first).
pub fn see_other(location: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let loc = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("./"));
    resp.headers_mut().insert(header::LOCATION, loc);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// The headers every response of the web page carries: a strict CSP (no
/// script at all, styles only from the one stylesheet), no sniffing, no
/// referrer outside the origin, no framing, and no caching of pages (they
/// show what a user may see).
pub fn secure(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
