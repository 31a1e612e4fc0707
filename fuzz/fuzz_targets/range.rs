//! `Range` request headers against a blob size. Invariants: never panics; a
//! partial answer lies inside the blob and is not empty.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wharf::http::handlers::{ByteRange, parse_range};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: Option<&'a str>,
    size: u64,
}

fuzz_target!(|input: Input<'_>| {
    if let Ok(ByteRange::Part(start, end)) = parse_range(input.header, input.size) {
        assert!(start <= end, "{input:?}");
        assert!(end < input.size, "{input:?}");
    }
});
