//! An upload chunk's `Content-Range`. Invariants: never panics; an accepted
//! range is ordered and its text is digits around one '-', with at most a unit
//! before and a total after.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::handlers::parse_content_range;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((a, b)) = parse_content_range(s) {
        assert!(a <= b, "{s:?}");
        assert!(!s.contains(' ') || s.starts_with("bytes "), "{s:?}");
        assert!(!s.contains('+'), "{s:?}");
    }
});
