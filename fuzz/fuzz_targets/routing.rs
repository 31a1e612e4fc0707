//! Name routing with arbitrary upstream names, hosted prefixes, requested names
//! and containerd `?ns=` values. Invariants: never panics; a proxied target's
//! local name is `<upstream-name>/<remote>` for a configured upstream.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wharf::oci::RepoName;
use wharf::oci::routing::{RouteRules, Target};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    upstreams: Vec<(&'a str, bool)>,
    prefixes: Vec<&'a str>,
    name: &'a str,
    ns: Option<&'a str>,
    pushed_here: bool,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(name) = input.name.parse::<RepoName>() else {
        return;
    };
    let rules = RouteRules {
        upstreams: input
            .upstreams
            .iter()
            .map(|(n, d)| (n.to_string(), *d))
            .collect(),
        hosted_prefixes: input.prefixes.iter().map(|p| p.to_string()).collect(),
    };
    let _ = rules.is_reserved_for_pushes(name.as_str());
    let _ = rules.push_hint();
    match rules.route(&name, input.ns, input.pushed_here) {
        Target::Hosted => {}
        Target::Proxied {
            upstream,
            remote,
            local,
        } => {
            let (uname, _) = &rules.upstreams[upstream];
            assert_eq!(local.as_str(), format!("{uname}/{remote}"));
            // With upstream names as config validation allows them (a host,
            // no '/', unique), routing the canonical local name again lands on
            // the same upstream and remote name: the cache key is stable.
            let mut seen = std::collections::HashSet::new();
            let valid = rules.upstreams.iter().all(|(u, _)| {
                !u.contains('/') && u.parse::<RepoName>().is_ok() && seen.insert(u.as_str())
            });
            if !valid {
                return;
            }
            match rules.route(&local, None, false) {
                Target::Proxied {
                    upstream: u2,
                    remote: r2,
                    local: l2,
                } => {
                    assert_eq!(u2, upstream);
                    assert_eq!(r2, remote);
                    assert_eq!(l2, local);
                }
                Target::Hosted => panic!("{local} routed to hosted"),
            }
        }
    }
});
