//! htpasswd files (operator-written, but re-read on change while serving).
//! Invariant: every accepted user has a bcrypt hash; `upsert` of a clean name
//! and a bcrypt hash gives a file that parses and holds that user.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::auth::htpasswd;

const H: &str = "$2y$05$2ubdC3d0IZ5gnB6XxONOkOG7Hj4BNA0QeVUf9kO2DdWigwYjNp9eK";

fuzz_target!(|s: &str| {
    if let Ok(users) = htpasswd::parse(s, "fuzz") {
        for (name, hash) in &users {
            assert!(!name.is_empty() && !name.contains(':'));
            assert!(htpasswd::is_bcrypt(hash), "{hash:?}");
        }
        let updated = htpasswd::upsert(s, "fuzzuser", H);
        let again = htpasswd::parse(&updated, "fuzz").expect("upsert keeps a file valid");
        assert_eq!(again.get("fuzzuser").map(String::as_str), Some(H));
    }
});
