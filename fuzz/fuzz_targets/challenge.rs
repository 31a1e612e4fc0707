//! `WWW-Authenticate` values from upstream registries (Docker Hub, ghcr, quay,
//! Distribution, and anything a hostile upstream sends).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::upstream::token::Challenge;

fuzz_target!(|s: &str| {
    if let Some(Challenge::Bearer { realm, .. }) = Challenge::parse(s) {
        // The realm comes from the header; it cannot be longer than it.
        assert!(realm.len() <= s.len());
    }
});
