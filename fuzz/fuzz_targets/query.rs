//! Query strings and form bodies (`/token` POSTs, `?mount=&from=`, `?n=&last=`,
//! `?ns=`). Invariant: never panics; every value it yields is found by `get`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::query::Query;

fuzz_target!(|s: &str| {
    for q in [Query::parse(Some(s)), Query::parse_form(s)] {
        for key in ["scope", "service", "mount", "from", "n", "last", "ns", ""] {
            let first = q.get(key);
            assert_eq!(q.all(key).next(), first);
        }
    }
});
