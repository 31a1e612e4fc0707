//! What clients present to wharf's own auth: Bearer tokens (`TokenSigner::verify`),
//! `Basic` credentials, and token request scopes (`Grant::parse`).
//! Invariants: verify never panics and never accepts a forged token; a parsed
//! scope prints back to a string that parses to the same scope.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wharf::auth::decode_basic;
use wharf::auth::token::{Grant, TokenSigner};

fn signer() -> &'static TokenSigner {
    static S: OnceLock<TokenSigner> = OnceLock::new();
    S.get_or_init(TokenSigner::new)
}

fuzz_target!(|s: &str| {
    // Without the key, no input is a valid token (the signer's key is random).
    assert!(
        signer().verify(s, 0).is_err(),
        "forged token accepted: {s:?}"
    );
    let _ = decode_basic(s);
    for scope in s.split(' ') {
        if let Some(a) = Grant::parse(scope) {
            assert_eq!(Grant::parse(&a.scope()), Some(a));
        }
    }
});
