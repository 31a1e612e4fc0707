//! Name routing with arbitrary upstream names, hosted prefixes, requested names
//! and containerd `?ns=` values. Invariants: never panics; a proxied target's
//! local name is `<upstream-name>/<remote>` for a configured upstream.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wharf::oci::RepoName;
use wharf::oci::routing::{Intent, NameFacts, RouteRules, Target};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    upstreams: Vec<(&'a str, bool)>,
    prefixes: Vec<&'a str>,
    name: &'a str,
    ns: Option<&'a str>,
    hosted: bool,
    mirrored: bool,
    claim_on_push: bool,
    hosted_only: bool,
    intent: u8,
}

struct Facts {
    hosted: bool,
    mirrored: bool,
}

impl NameFacts for Facts {
    fn is_hosted(&self, _: &str) -> bool {
        self.hosted
    }
    fn is_mirrored(&self, _: &str) -> bool {
        self.mirrored
    }
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
        claim_on_push: input.claim_on_push,
        hosted_only: input.hosted_only,
    };
    let facts = Facts {
        hosted: input.hosted,
        mirrored: input.mirrored,
    };
    let intent = match input.intent % 3 {
        0 => Intent::Read,
        1 => Intent::Push,
        _ => Intent::Delete,
    };
    let _ = rules.is_reserved_for_pushes(name.as_str());
    let Ok(target) = rules.route(&name, input.ns, intent, &facts) else {
        return;
    };
    match target {
        Target::Hosted { claim } => {
            assert!(!claim || intent == Intent::Push, "only pushes claim");
        }
        Target::Proxied(m) => {
            let _ = rules.write_refusal(&name, &m, intent);
            let (upstream, remote, local) = (m.upstream, m.remote, m.local);
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
            match rules.route(&local, None, Intent::Read, &facts) {
                Ok(Target::Proxied(m2)) => {
                    assert_eq!(m2.upstream, upstream);
                    assert_eq!(m2.remote, remote);
                    assert_eq!(m2.local, local);
                }
                other => panic!("{local} routed to {other:?}"),
            }
        }
    }
});
