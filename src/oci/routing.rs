//! Name routing: which repository names are hosted here and which are proxied to
//! which upstream. One function, DESIGN's four rules in order:
//!
//! 1. `<upstream-name>/<rest>` → that upstream, as `<rest>`;
//! 2. else a `?ns=<host>` naming a configured upstream (containerd) → it, as the name;
//! 3. else under a `[hosted] prefixes` entry, or pushed here before → hosted;
//! 4. else the default upstream, as the name (hosted when there is none).
//!
//! For `docker.io`, a one-component name gets `library/` (`nginx` → `library/nginx`).
//! Proxied content is stored under the canonical name `<upstream-name>/<remote>`,
//! so every spelling of one image shares one cache.

use super::name::RepoName;

/// The upstream whose one-component names live under `library/`.
pub const DOCKER_HUB: &str = "docker.io";

/// Where a repository name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Stored and served here; pushes allowed.
    Hosted,
    /// Fetched from an upstream and cached; read-only.
    Proxied {
        /// Index into the configured upstreams.
        upstream: usize,
        /// The name at the upstream.
        remote: RepoName,
        /// The canonical local name, `<upstream-name>/<remote>`.
        local: RepoName,
    },
}

/// The routing-relevant part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    /// Upstream names in configuration order, with their `default` flag.
    pub upstreams: Vec<(String, bool)>,
    /// `[hosted] prefixes`.
    pub hosted_prefixes: Vec<String>,
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
    fn proxied(&self, upstream: usize, remote: &str) -> Option<Target> {
        let (uname, _) = self.upstreams.get(upstream)?;
        let remote = if uname == DOCKER_HUB && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        };
        Some(Target::Proxied {
            upstream,
            remote: remote.parse().ok()?,
            local: format!("{uname}/{remote}").parse().ok()?,
        })
    }

    /// Whether `name` is under a hosted prefix.
    pub fn is_reserved_for_pushes(&self, name: &str) -> bool {
        self.hosted_prefixes.iter().any(|p| under_prefix(name, p))
    }

    /// Routes `name`; `ns` is containerd's query parameter; `pushed_here` says
    /// whether the name already holds pushed content.
    pub fn route(&self, name: &RepoName, ns: Option<&str>, pushed_here: bool) -> Target {
        let n = name.as_str();
        if let Some((first, rest)) = n.split_once('/') {
            if let Some(i) = self.upstreams.iter().position(|(u, _)| u == first) {
                if let Some(t) = self.proxied(i, rest) {
                    return t;
                }
            }
        }
        if let Some(ns) = ns {
            if let Some(i) = self.upstreams.iter().position(|(u, _)| u == ns) {
                if let Some(t) = self.proxied(i, n) {
                    return t;
                }
            }
        }
        if self.is_reserved_for_pushes(n) || pushed_here {
            return Target::Hosted;
        }
        match self.upstreams.iter().position(|(_, d)| *d) {
            Some(i) => self.proxied(i, n).unwrap_or(Target::Hosted),
            None => Target::Hosted,
        }
    }

    /// The prefix to suggest when a push hits a proxied name.
    pub fn push_hint(&self) -> String {
        match self.hosted_prefixes.first() {
            Some(p) => format!("push under a hosted prefix such as {p:?} ([hosted] prefixes)"),
            None => "add a prefix to [hosted] prefixes (for example \"team/\") and push under it"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RouteRules {
        RouteRules {
            upstreams: vec![
                ("docker.io".into(), true),
                ("ghcr.io".into(), false),
                ("quay.io".into(), false),
            ],
            hosted_prefixes: vec!["team/".into(), "solo".into()],
        }
    }

    fn n(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn proxied(t: Target) -> (usize, String, String) {
        match t {
            Target::Proxied {
                upstream,
                remote,
                local,
            } => (upstream, remote.to_string(), local.to_string()),
            Target::Hosted => panic!("hosted"),
        }
    }

    #[test]
    fn upstream_prefix_wins() {
        let r = rules();
        assert_eq!(
            proxied(r.route(&n("ghcr.io/org/app"), None, false)),
            (1, "org/app".into(), "ghcr.io/org/app".into())
        );
        assert_eq!(
            proxied(r.route(&n("docker.io/library/nginx"), None, false)),
            (0, "library/nginx".into(), "docker.io/library/nginx".into())
        );
        assert_eq!(
            proxied(r.route(&n("docker.io/nginx"), None, false)).1,
            "library/nginx"
        );
        // Even a pushed-looking prefix under an upstream name goes upstream.
        assert!(matches!(
            r.route(&n("quay.io/team/x"), None, true),
            Target::Proxied { upstream: 2, .. }
        ));
    }

    #[test]
    fn ns_query_names_an_upstream() {
        let r = rules();
        assert_eq!(
            proxied(r.route(&n("org/app"), Some("ghcr.io"), false)),
            (1, "org/app".into(), "ghcr.io/org/app".into())
        );
        assert_eq!(
            proxied(r.route(&n("nginx"), Some("docker.io"), false)).1,
            "library/nginx"
        );
        // An unknown ns is ignored: the later rules decide.
        assert_eq!(
            r.route(&n("team/app"), Some("example.com"), false),
            Target::Hosted
        );
    }

    #[test]
    fn hosted_prefixes_and_pushed_names() {
        let r = rules();
        assert_eq!(r.route(&n("team/app"), None, false), Target::Hosted);
        assert_eq!(r.route(&n("solo"), None, false), Target::Hosted);
        assert_eq!(r.route(&n("solo/x"), None, false), Target::Hosted);
        assert!(matches!(
            r.route(&n("solox"), None, false),
            Target::Proxied { .. }
        ));
        assert!(matches!(
            r.route(&n("teamx/app"), None, false),
            Target::Proxied { .. }
        ));
        assert_eq!(r.route(&n("mine/app"), None, true), Target::Hosted);
    }

    #[test]
    fn default_upstream_and_library_rule() {
        let r = rules();
        assert_eq!(
            proxied(r.route(&n("nginx"), None, false)),
            (0, "library/nginx".into(), "docker.io/library/nginx".into())
        );
        assert_eq!(
            proxied(r.route(&n("bitnami/redis"), None, false)).1,
            "bitnami/redis"
        );
        let no_default = RouteRules {
            upstreams: vec![("ghcr.io".into(), false)],
            hosted_prefixes: vec![],
        };
        assert_eq!(
            no_default.route(&n("anything"), None, false),
            Target::Hosted
        );
        assert!(matches!(
            no_default.route(&n("ghcr.io/a/b"), None, false),
            Target::Proxied { .. }
        ));
        // The library rule is Docker Hub's only.
        let ghcr_default = RouteRules {
            upstreams: vec![("ghcr.io".into(), true)],
            hosted_prefixes: vec![],
        };
        assert_eq!(proxied(ghcr_default.route(&n("app"), None, false)).1, "app");
    }
}
