//! The session cookie and the checks every form POST passes: same origin
//! (`Origin`, `Sec-Fetch-Site`), a live session, and its CSRF field. The
//! signing is the auth layer's ([`crate::auth::session`]); this file only
//! moves values in and out of HTTP headers.

use http::{HeaderMap, header};

use super::UiError;

/// The session cookie's name.
pub const COOKIE: &str = "wharf_session";
/// The one-line result of the last action, shown once.
pub const FLASH_COOKIE: &str = "wharf_flash";
/// The path both cookies are scoped to: the web page's own.
pub const COOKIE_PATH: &str = "/ui";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim())
        })
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/ui`, `Secure`
/// over HTTPS; `max_age` 0 clears the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// Refuses a form POST another site made the browser send: `Sec-Fetch-Site`
/// must not say cross-site (or same-site: a sibling host is another party),
/// and an `Origin`, when sent, must be this host (the `Host` header, or over
/// HTTP/2 the request's `:authority`, given as `authority`).
pub fn check_same_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), UiError> {
    let refused = || {
        UiError::Forbidden(
            "this form was sent from another site; use the page on this registry".into(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(refused());
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| refused())?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority)
        .unwrap_or_default();
    // Behind a proxy that rewrites Host, X-Forwarded-Host names the one the
    // browser used; either may match.
    let forwarded_host = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(refused)?;
    if !origin_host.is_empty()
        && (origin_host.eq_ignore_ascii_case(host)
            || origin_host.eq_ignore_ascii_case(forwarded_host))
    {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn cookies_and_origins() {
        let m = h(&[("cookie", "a=1; wharf_session=xyz.abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&m, COOKIE), Some("xyz.abc"));
        assert_eq!(cookie(&m, "b"), Some("2"));
        assert_eq!(cookie(&m, "c"), None);
        let c = set_cookie(COOKIE, "v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(COOKIE, "v", 60, false).contains("Secure"));
        assert!(check_same_origin(&h(&[("host", "r:5000")]), None).is_ok());
        // HTTP/2: no Host header, the authority instead.
        assert!(check_same_origin(&h(&[("origin", "https://r")]), Some("r")).is_ok());
        assert!(check_same_origin(&h(&[("origin", "https://evil")]), Some("r")).is_err());
        assert!(
            check_same_origin(&h(&[("host", "r:5000"), ("origin", "http://r:5000")]), None).is_ok()
        );
        assert!(
            check_same_origin(&h(&[("host", "r:5000"), ("origin", "http://evil")]), None).is_err()
        );
        assert!(check_same_origin(&h(&[("host", "r:5000"), ("origin", "null")]), None).is_err());
        assert!(
            check_same_origin(
                &h(&[("host", "r:5000"), ("sec-fetch-site", "cross-site")]),
                None
            )
            .is_err()
        );
        assert!(
            check_same_origin(
                &h(&[("host", "r:5000"), ("sec-fetch-site", "same-origin")]),
                None
            )
            .is_ok()
        );
    }
}
