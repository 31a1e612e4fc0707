//! Request lines: method + path into a typed route. The first byte picks the
//! method; the rest is the path. Invariant: never panics, and a route's name,
//! reference and digest print back as they appear in the path.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use wharf::http::router::Route;

const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let method = &METHODS[sel as usize % METHODS.len()];
    let Ok(route) = Route::parse(method, path) else {
        return;
    };
    let _ = route.name();
    let _ = route.action(method);
    if let Some(repo) = route.repo() {
        let prefix = format!("/v2/{repo}/");
        assert!(path.starts_with(&prefix), "{path:?} vs {prefix:?}");
        match &route {
            Route::Manifest { reference, .. } => {
                assert_eq!(path, format!("{prefix}manifests/{reference}"))
            }
            Route::Blob { digest, .. } => assert_eq!(path, format!("{prefix}blobs/{digest}")),
            Route::Referrers { digest, .. } => {
                assert_eq!(path, format!("{prefix}referrers/{digest}"))
            }
            Route::Upload { id, .. } => assert_eq!(path, format!("{prefix}blobs/uploads/{id}")),
            _ => {}
        }
        let other = "other/name".parse().expect("valid name");
        let moved = route.clone().with_repo(other);
        assert_eq!(moved.name(), route.name());
    }
});
