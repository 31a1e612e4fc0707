//! Repository names, tags, references and digests as they arrive in URL paths,
//! `?from=` / `?mount=` queries and upstream responses.
//! Invariant: whatever parses prints back byte-for-byte and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::{Digest, Reference, RepoName, Tag};

fuzz_target!(|s: &str| {
    if let Ok(n) = s.parse::<RepoName>() {
        assert_eq!(n.to_string(), s);
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= wharf::oci::name::MAX_NAME_LEN);
        // A valid name is safe as a path: no empty, `.` or `..` component.
        assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    }
    if let Ok(t) = s.parse::<Tag>() {
        assert_eq!(t.to_string(), s);
        assert!(!s.contains(['/', ':']));
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
    }
    if let Ok(r) = s.parse::<Reference>() {
        assert_eq!(r.to_string(), s);
        assert!(r.to_string().parse::<Reference>().ok() == Some(r));
    }
});
