//! Name routing: which repository names are hosted here and which are proxied to
//! which upstream. One function, DESIGN's rules in order:
//!
//! 1. `<upstream-name>/<rest>` → that upstream, as `<rest>`;
//! 2. else a `?ns=<host>` naming a configured upstream (containerd) → it, as the name;
//! 3. else under a `[hosted] prefixes` entry, or holding pushed content → hosted;
//! 4. else a push with `claim_on_push` claims the name as hosted, unless it is in
//!    the default upstream's reserved namespace (`library/…` for docker.io) or its
//!    mirrored name already holds content;
//! 5. else the default upstream, as the name (hosted when there is none, or with
//!    `[hosted] only`, which makes every name hosted and contacts no upstream).
//!
//! For `docker.io`, a one-component name gets `library/` (`nginx` → `library/nginx`),
//! but only when it is proxied: a pushed `bun` stays `bun`. Proxied content is
//! stored under the canonical name `<upstream-name>/<remote>`, so every spelling of
//! one image shares one cache. Token issuing and authorization both call this
//! function, so the name a token is issued for and the name a request reaches
//! cannot differ.

use super::name::{NameError, RepoName};

/// The upstream whose one-component names live under `library/`.
pub const DOCKER_HUB: &str = "docker.io";

/// What a request does to the name, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Reads (GET, HEAD): never claims.
    Read,
    /// A push (upload start, upload, manifest PUT): may claim the name (rule 4).
    Push,
    /// A deletion: acts on hosted names only, never claims.
    Delete,
}

/// A name served from an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Index into the configured upstreams.
    pub upstream: usize,
    /// The name at the upstream.
    pub remote: RepoName,
    /// The canonical local name, `<upstream-name>/<remote>`.
    pub local: RepoName,
    /// Rule 4 would let a push claim the requested name (it holds nothing yet,
    /// and is not reserved): a push then makes it hosted, and a blob `HEAD` from
    /// a caller allowed to push is answered from the local store.
    pub claimable: bool,
}

/// Where a repository name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Stored and served here under the requested name.
    Hosted {
        /// True when this push is what makes the name hosted (rule 4): logged
        /// with the user who claimed it.
        claim: bool,
    },
    /// Fetched from an upstream and cached; read-only.
    Proxied(Mirror),
}

impl Target {
    /// The name the request's content lives under here.
    pub fn local<'a>(&'a self, requested: &'a RepoName) -> &'a RepoName {
        match self {
            Target::Hosted { .. } => requested,
            Target::Proxied(m) => &m.local,
        }
    }
}

/// What routing needs to know about names already in the store.
pub trait NameFacts {
    /// The name holds pushed (hosted) content (rule 3).
    fn is_hosted(&self, name: &str) -> bool;
    /// The canonical mirrored name holds cached content (blocks a claim).
    fn is_mirrored(&self, local: &str) -> bool;
}

/// An empty store: nothing hosted, nothing mirrored.
pub struct NoFacts;

impl NameFacts for NoFacts {
    fn is_hosted(&self, _: &str) -> bool {
        false
    }
    fn is_mirrored(&self, _: &str) -> bool {
        false
    }
}

/// The routing-relevant part of the configuration.
#[derive(Debug, Clone)]
pub struct RouteRules {
    /// Upstream names in configuration order, with their `default` flag.
    pub upstreams: Vec<(String, bool)>,
    /// `[hosted] prefixes`.
    pub hosted_prefixes: Vec<String>,
    /// `[hosted] claim_on_push`.
    pub claim_on_push: bool,
    /// `[hosted] only`: every name is hosted; no upstream is ever contacted.
    pub hosted_only: bool,
}

impl Default for RouteRules {
    fn default() -> Self {
        RouteRules {
            upstreams: Vec::new(),
            hosted_prefixes: Vec::new(),
            claim_on_push: true,
            hosted_only: false,
        }
    }
}

fn under_prefix(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    match prefix.strip_suffix('/') {
        Some(p) => name.starts_with(prefix) || name == p,
        None => {
            name == prefix
                || name
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/'))
        }
    }
}

impl RouteRules {
    /// The mirror of `remote` at upstream `upstream`, or a name error when the
    /// upstream or local spelling is not a valid name (too long, say).
    fn mirror(&self, upstream: usize, name: &RepoName, remote: &str) -> Result<Mirror, NameError> {
        let uname = self
            .upstreams
            .get(upstream)
            .map(|(n, _)| n.as_str())
            .unwrap_or_default();
        let remote = RepoName::valid_suffix(name, remote);
        let remote = if uname == DOCKER_HUB && !remote.as_str().contains('/') {
            RepoName::joined("library", &remote)?
        } else {
            remote
        };
        let local = RepoName::joined(uname, &remote)?;
        Ok(Mirror {
            upstream,
            remote,
            local,
            claimable: false,
        })
    }

    /// Whether `name` is under a hosted prefix.
    pub fn is_reserved_for_pushes(&self, name: &str) -> bool {
        self.hosted_prefixes.iter().any(|p| under_prefix(name, p))
    }

    /// The default upstream's index, unless every name is hosted.
    fn default_upstream(&self) -> Option<usize> {
        if self.hosted_only {
            return None;
        }
        self.upstreams.iter().position(|(_, d)| *d)
    }

    /// Whether `name` is in the default upstream's reserved namespace
    /// (`library/…` on Docker Hub): it can never be claimed by a push.
    fn reserved_upstream_namespace(&self, name: &str) -> bool {
        match self.default_upstream().and_then(|i| self.upstreams.get(i)) {
            Some((u, _)) if u == DOCKER_HUB => name.starts_with("library/"),
            _ => false,
        }
    }

    /// Routes `name` for `intent`. `ns` is containerd's query parameter; `facts`
    /// says what the store already holds. A name error means the requested name
    /// is valid but its mirrored spelling is not (longer than 255 characters).
    pub fn route(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        intent: Intent,
        facts: &dyn NameFacts,
    ) -> Result<Target, NameError> {
        let hosted = Target::Hosted { claim: false };
        if self.hosted_only {
            return Ok(hosted);
        }
        let n = name.as_str();
        // Rule 1: an upstream's name as the first component.
        if let Some((first, rest)) = n.split_once('/') {
            if let Some(i) = self.upstreams.iter().position(|(u, _)| u == first) {
                return Ok(Target::Proxied(self.mirror(i, name, rest)?));
            }
        }
        // Rule 2: containerd's ns= names a configured upstream.
        if let Some(i) = ns.and_then(|ns| self.upstreams.iter().position(|(u, _)| u == ns)) {
            return Ok(Target::Proxied(self.mirror(i, name, n)?));
        }
        // Rule 3: reserved for pushes, or pushed here before.
        if self.is_reserved_for_pushes(n) || facts.is_hosted(n) {
            return Ok(hosted);
        }
        let Some(default) = self.default_upstream() else {
            return Ok(hosted);
        };
        let mirror = self.mirror(default, name, n);
        // Rule 4: a push may claim a name that holds nothing yet.
        let claimable = self.claim_on_push
            && !self.reserved_upstream_namespace(n)
            && mirror
                .as_ref()
                .map_or(true, |m| !facts.is_mirrored(m.local.as_str()));
        if intent == Intent::Push && claimable {
            return Ok(Target::Hosted { claim: true });
        }
        // Rule 5: the default upstream.
        let mut mirror = mirror?;
        mirror.claimable = claimable;
        Ok(Target::Proxied(mirror))
    }

    /// Why a push or delete cannot act on a mirrored name, and what to do.
    pub fn write_refusal(&self, requested: &RepoName, mirror: &Mirror, intent: Intent) -> String {
        let n = requested.as_str();
        let upstream = self
            .upstreams
            .get(mirror.upstream)
            .map(|(u, _)| u.as_str())
            .unwrap_or("an upstream");
        let hint = match self.hosted_prefixes.first() {
            Some(p) => format!("push under a hosted prefix such as {p:?} ([hosted] prefixes)"),
            None => "add a prefix to [hosted] prefixes (for example \"team/\") and push under it"
                .to_owned(),
        };
        let why = if intent == Intent::Delete {
            format!("{n} is mirrored from {upstream} and is read-only")
        } else if !n.starts_with(&format!("{upstream}/")) && self.reserved_upstream_namespace(n) {
            format!(
                "{n} is in {upstream}'s reserved namespace (library/...) and is mirrored, not pushable"
            )
        } else if mirror.local.as_str() != n && !self.claim_on_push {
            format!("{n} is mirrored from {upstream} ([hosted] claim_on_push = false)")
        } else if mirror.local.as_str() != n && !n.starts_with(&format!("{upstream}/")) {
            format!(
                "{n} already holds content mirrored from {upstream} ({}), so it cannot become a pushed repository",
                mirror.local
            )
        } else {
            format!("{n} is mirrored from {upstream} and is read-only")
        };
        format!("{why}; {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn rules() -> RouteRules {
        RouteRules {
            upstreams: vec![
                ("docker.io".into(), true),
                ("ghcr.io".into(), false),
                ("quay.io".into(), false),
            ],
            hosted_prefixes: vec!["team/".into(), "solo".into()],
            ..RouteRules::default()
        }
    }

    fn n(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    struct Facts {
        hosted: HashSet<&'static str>,
        mirrored: HashSet<&'static str>,
    }

    impl NameFacts for Facts {
        fn is_hosted(&self, name: &str) -> bool {
            self.hosted.contains(name)
        }
        fn is_mirrored(&self, local: &str) -> bool {
            self.mirrored.contains(local)
        }
    }

    fn facts(hosted: &[&'static str], mirrored: &[&'static str]) -> Facts {
        Facts {
            hosted: hosted.iter().copied().collect(),
            mirrored: mirrored.iter().copied().collect(),
        }
    }

    fn route(r: &RouteRules, name: &str, ns: Option<&str>, intent: Intent) -> Target {
        r.route(&n(name), ns, intent, &NoFacts).unwrap()
    }

    fn proxied(t: Target) -> (usize, String, String) {
        match t {
            Target::Proxied(m) => (m.upstream, m.remote.to_string(), m.local.to_string()),
            Target::Hosted { .. } => panic!("hosted"),
        }
    }

    const HOSTED: Target = Target::Hosted { claim: false };
    const CLAIMED: Target = Target::Hosted { claim: true };

    #[test]
    fn upstream_prefix_wins() {
        let r = rules();
        assert_eq!(
            proxied(route(&r, "ghcr.io/org/app", None, Intent::Read)),
            (1, "org/app".into(), "ghcr.io/org/app".into())
        );
        assert_eq!(
            proxied(route(&r, "docker.io/library/nginx", None, Intent::Read)),
            (0, "library/nginx".into(), "docker.io/library/nginx".into())
        );
        assert_eq!(
            proxied(route(&r, "docker.io/nginx", None, Intent::Read)).1,
            "library/nginx"
        );
        // Even a pushed-looking name under an upstream name goes upstream, and a
        // push there is no claim.
        let f = facts(&["quay.io/team/x"], &[]);
        assert!(matches!(
            r.route(&n("quay.io/team/x"), None, Intent::Push, &f),
            Ok(Target::Proxied(Mirror {
                upstream: 2,
                claimable: false,
                ..
            }))
        ));
    }

    #[test]
    fn ns_query_names_an_upstream() {
        let r = rules();
        assert_eq!(
            proxied(route(&r, "org/app", Some("ghcr.io"), Intent::Read)),
            (1, "org/app".into(), "ghcr.io/org/app".into())
        );
        assert_eq!(
            proxied(route(&r, "nginx", Some("docker.io"), Intent::Read)).1,
            "library/nginx"
        );
        // ns= beats a hosted prefix: team/app?ns=ghcr.io is ghcr's.
        assert!(matches!(
            route(&r, "team/app", Some("ghcr.io"), Intent::Push),
            Target::Proxied(_)
        ));
        // An unknown ns is ignored: the later rules decide.
        assert_eq!(
            route(&r, "team/app", Some("example.com"), Intent::Read),
            HOSTED
        );
    }

    #[test]
    fn hosted_prefixes_and_pushed_names() {
        let r = rules();
        assert_eq!(route(&r, "team/app", None, Intent::Read), HOSTED);
        assert_eq!(route(&r, "solo", None, Intent::Read), HOSTED);
        assert_eq!(route(&r, "solo/x", None, Intent::Read), HOSTED);
        assert!(matches!(
            route(&r, "solox", None, Intent::Read),
            Target::Proxied(_)
        ));
        assert!(matches!(
            route(&r, "teamx/app", None, Intent::Read),
            Target::Proxied(_)
        ));
        let f = facts(&["mine/app"], &[]);
        assert_eq!(
            r.route(&n("mine/app"), None, Intent::Read, &f).unwrap(),
            HOSTED
        );
    }

    #[test]
    fn default_upstream_and_library_rule() {
        let r = rules();
        assert_eq!(
            proxied(route(&r, "nginx", None, Intent::Read)),
            (0, "library/nginx".into(), "docker.io/library/nginx".into())
        );
        assert_eq!(
            proxied(route(&r, "bitnami/redis", None, Intent::Read)).1,
            "bitnami/redis"
        );
        let no_default = RouteRules {
            upstreams: vec![("ghcr.io".into(), false)],
            ..RouteRules::default()
        };
        assert_eq!(route(&no_default, "anything", None, Intent::Read), HOSTED);
        assert!(matches!(
            route(&no_default, "ghcr.io/a/b", None, Intent::Read),
            Target::Proxied(_)
        ));
        // The library rule is Docker Hub's only.
        let ghcr_default = RouteRules {
            upstreams: vec![("ghcr.io".into(), true)],
            ..RouteRules::default()
        };
        assert_eq!(
            proxied(route(&ghcr_default, "app", None, Intent::Read)).1,
            "app"
        );
    }

    #[test]
    fn pushes_claim_names_that_hold_nothing() {
        let r = rules();
        // The seeds' names: a pushed `bun` stays `bun`.
        assert_eq!(route(&r, "bun", None, Intent::Push), CLAIMED);
        assert_eq!(route(&r, "myhub/nginx", None, Intent::Push), CLAIMED);
        // Reads of a claimable name still mirror, and say that a push may claim it.
        match route(&r, "bun", None, Intent::Read) {
            Target::Proxied(m) => {
                assert!(m.claimable);
                assert_eq!(m.local.as_str(), "docker.io/library/bun");
            }
            t => panic!("{t:?}"),
        }
        // Docker Hub's reserved namespace is never claimed.
        assert!(matches!(
            route(&r, "library/bun", None, Intent::Push),
            Target::Proxied(Mirror {
                claimable: false,
                ..
            })
        ));
        // A name whose mirror holds content is not claimed.
        let f = facts(&[], &["docker.io/library/nginx", "docker.io/bitnami/redis"]);
        for name in ["nginx", "bitnami/redis"] {
            let t = r.route(&n(name), None, Intent::Push, &f).unwrap();
            assert!(
                matches!(
                    t,
                    Target::Proxied(Mirror {
                        claimable: false,
                        ..
                    })
                ),
                "{name}"
            );
        }
        // Deletions never claim.
        assert!(matches!(
            route(&r, "bun", None, Intent::Delete),
            Target::Proxied(_)
        ));
        // Once pushed, a name is hosted for every intent, without a new claim.
        let f = facts(&["bun"], &[]);
        for i in [Intent::Read, Intent::Push, Intent::Delete] {
            assert_eq!(r.route(&n("bun"), None, i, &f).unwrap(), HOSTED);
        }
        // claim_on_push = false: pushes to unclaimed names are refused (proxied).
        let strict = RouteRules {
            claim_on_push: false,
            ..rules()
        };
        assert!(matches!(
            route(&strict, "bun", None, Intent::Push),
            Target::Proxied(Mirror {
                claimable: false,
                ..
            })
        ));
    }

    #[test]
    fn hosted_only_hosts_everything() {
        let r = RouteRules {
            hosted_only: true,
            ..rules()
        };
        for name in [
            "nginx",
            "library/nginx",
            "docker.io/library/nginx",
            "ghcr.io/a",
        ] {
            assert_eq!(route(&r, name, None, Intent::Read), HOSTED, "{name}");
            assert_eq!(route(&r, name, Some("ghcr.io"), Intent::Push), HOSTED);
        }
    }

    #[test]
    fn mirrored_names_longer_than_the_limit_are_invalid_not_hosted() {
        let r = rules();
        let long = "a".repeat(245);
        // docker.io/<245> is a valid request, but docker.io/library/<245> is not a name.
        let name = n(&format!("docker.io/{long}"));
        for i in [Intent::Read, Intent::Push] {
            assert!(r.route(&name, None, i, &NoFacts).is_err());
        }
        assert!(
            r.route(&n(&long), Some("ghcr.io"), Intent::Read, &NoFacts)
                .is_ok()
        );
        let longer = "b".repeat(250);
        assert!(
            r.route(&n(&longer), Some("docker.io"), Intent::Read, &NoFacts)
                .is_err()
        );
        // Unqualified: it cannot be mirrored, but it can be pushed (claimed).
        assert!(r.route(&n(&longer), None, Intent::Read, &NoFacts).is_err());
        assert_eq!(
            r.route(&n(&longer), None, Intent::Push, &NoFacts).unwrap(),
            CLAIMED
        );
    }

    #[test]
    fn refusals_say_why_and_what_to_do() {
        let r = rules();
        let m = |name: &str, intent| match r.route(&n(name), None, intent, &NoFacts).unwrap() {
            Target::Proxied(m) => r.write_refusal(&n(name), &m, intent),
            t => panic!("{t:?}"),
        };
        let msg = m("library/bun", Intent::Push);
        assert!(
            msg.contains("reserved") && msg.contains("[hosted] prefixes"),
            "{msg}"
        );
        let msg = m("docker.io/library/bun", Intent::Push);
        assert!(msg.contains("read-only"), "{msg}");
        let f = facts(&[], &["docker.io/library/nginx"]);
        let t = r.route(&n("nginx"), None, Intent::Push, &f).unwrap();
        let Target::Proxied(mirror) = t else { panic!() };
        let msg = r.write_refusal(&n("nginx"), &mirror, Intent::Push);
        assert!(msg.contains("already holds content mirrored"), "{msg}");
    }
}
