//! A token service's JSON answer (upstream bytes). Invariants: never panics;
//! an accepted lifetime is between a minute and a day, whatever `expires_in`
//! says, so no clock arithmetic on it can overflow.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wharf::upstream::token::parse_token_response;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, ttl)) = parse_token_response(data) {
        assert!(ttl >= Duration::from_secs(60), "{ttl:?}");
        assert!(ttl <= Duration::from_secs(86_400), "{ttl:?}");
        assert!(std::time::Instant::now().checked_add(ttl).is_some());
    }
});
