//! The TOML configuration, and the size and duration notations on their own
//! (`512MiB`, `5m`), which also arrive through `wharf config from-registry`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wharf::config::{ByteSize, Config, HumanDuration};
use wharf::oci::routing::{Intent, NoFacts};

fuzz_target!(|s: &str| {
    if let Ok(cfg) = Config::parse(s, Path::new("fuzz.toml")) {
        // Docker Hub is the preset, except for a plain private registry.
        assert!(cfg.upstream.is_empty() == cfg.hosted.only);
        assert!(cfg.upstream.iter().filter(|u| u.default).count() <= 1);
        // The routing rules it gives route every name without panicking.
        let rules = cfg.route_rules();
        if let Ok(n) = "library/nginx".parse() {
            let _ = rules.route(&n, None, Intent::Push, &NoFacts);
        }
    }
    let _ = s.parse::<ByteSize>();
    let _ = s.parse::<HumanDuration>();
});
